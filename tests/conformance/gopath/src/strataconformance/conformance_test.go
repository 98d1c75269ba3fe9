// Package strataconformance runs containerd's own snapshotter conformance
// suite (github.com/containerd/containerd/snapshots/testsuite, containerd
// 1.6.x as packaged by Debian) against the Strata proxy snapshotter daemon.
//
// Every call of the suite's factory function starts a fresh daemon on a fresh
// root: the suite runs its subtests in parallel and reuses snapshot key names
// between subtests, so they must not share a daemon.
//
// Environment:
//
//	STRATA_BIN                    path of the strata binary (required)
//	RUST_LOG                      passed through to the daemon
//	STRATA_CONFORMANCE_LOGDIR     if set, every daemon's stderr is copied there
//	                              (the suite deletes its temp dirs afterwards)
//	STRATA_CONFORMANCE_PIDDIR     if set, a file named after each running
//	                              daemon's pid is kept there, so that a runner
//	                              can reap daemons orphaned by a test timeout
//
// Build (offline, GOPATH mode): see ../../../run.sh.
package strataconformance

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

const (
	// readyTimeout bounds how long the daemon may take to create its socket.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds how long the daemon may take to exit after SIGTERM.
	stopTimeout = 10 * time.Second
	// dialTimeout bounds the gRPC connection set-up once the socket accepts.
	dialTimeout = 5 * time.Second
	// maxSunPath: sockaddr_un.sun_path is 108 bytes including the NUL.
	maxSunPath = 107
	// maxEcho bounds how much daemon stderr is echoed into test output.
	maxEcho = 64 << 10
)

func TestOverlay(t *testing.T) { runSuite(t, "overlay") }

func TestNative(t *testing.T) { runSuite(t, "native") }

// TestBtrfs needs every root on btrfs: run.sh points TMPDIR at a loop-mounted btrfs.
func TestBtrfs(t *testing.T) { runSuite(t, "btrfs") }

func runSuite(t *testing.T, backend string) {
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Fatal("STRATA_BIN is not set: it must name the strata daemon binary (see tests/conformance/run.sh)")
	}
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatalf("STRATA_BIN=%q: %v", bin, err)
	}
	if st.IsDir() || st.Mode()&0111 == 0 {
		t.Fatalf("STRATA_BIN=%q is not an executable file", bin)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the snapshotter conformance suite mounts filesystems: it must run as root")
	}
	testsuite.SnapshotterSuite(t, "Strata-"+backend, func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		return startStrata(ctx, bin, backend, root)
	})
}

// daemon is one running `strata serve`.
type daemon struct {
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	pidFile string
	done    chan struct{} // closed when cmd.Wait has returned
	waitErr error         // valid once done is closed
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stderr returns (the tail of) what the daemon wrote so far.
func (d *daemon) stderr() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return fmt.Sprintf("<cannot read daemon log %s: %v>", d.logPath, err)
	}
	if len(b) == 0 {
		return "<daemon wrote nothing to stderr>"
	}
	if len(b) > maxEcho {
		return fmt.Sprintf("<... %d bytes cut ...>\n%s", len(b)-maxEcho, b[len(b)-maxEcho:])
	}
	return string(b)
}

// kill SIGKILLs the daemon (if still running) and waits for it.
func (d *daemon) kill() {
	if !d.exited() {
		_ = d.cmd.Process.Kill()
	}
	<-d.done
}

func exitDescription(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error() // "exit status N" or "signal: killed" etc.
}

func startStrata(ctx context.Context, bin, backend, root string) (_ snapshots.Snapshotter, _ func() error, retErr error) {
	state := filepath.Join(root, "state")
	if err := os.MkdirAll(state, 0700); err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(root, "s.sock")
	if len(sock) > maxSunPath {
		return nil, nil, fmt.Errorf("socket path %q is %d bytes, longer than the %d bytes a unix socket address can hold; use a shorter TMPDIR", sock, len(sock), maxSunPath)
	}

	d := &daemon{logPath: filepath.Join(root, "strata.stderr"), done: make(chan struct{})}
	f, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0644)
	if err != nil {
		return nil, nil, err
	}
	d.logFile = f

	cmd := exec.Command(bin, "serve", "--root", state, "--address", sock, "--backend", backend)
	// The whole environment (RUST_LOG, RUST_BACKTRACE, ...) is passed through.
	cmd.Env = os.Environ()
	cmd.Stdout = f
	cmd.Stderr = f
	d.cmd = cmd
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	if dir := os.Getenv("STRATA_CONFORMANCE_PIDDIR"); dir != "" {
		p := filepath.Join(dir, strconv.Itoa(cmd.Process.Pid))
		if os.WriteFile(p, []byte(bin+"\n"), 0644) == nil {
			d.pidFile = p
		}
	}
	go func() {
		d.waitErr = cmd.Wait()
		if d.pidFile != "" {
			os.Remove(d.pidFile)
		}
		close(d.done)
	}()
	cmdline := strings.Join(cmd.Args, " ")
	log.G(ctx).Debugf("started strata daemon pid %d: %s", cmd.Process.Pid, cmdline)

	failStart := func(format string, args ...interface{}) error {
		d.kill()
		f.Close()
		msg := fmt.Sprintf(format, args...)
		err := fmt.Errorf("%s\ncommand: %s\n----- daemon stderr -----\n%s\n----- end of daemon stderr -----", msg, cmdline, d.stderr())
		saveLog(ctx, d, testFromContext(ctx))
		return err
	}

	// Readiness: the socket exists and accepts connections.
	deadline := time.Now().Add(readyTimeout)
	for {
		if d.exited() {
			return nil, nil, failStart("strata daemon exited before it was ready (%s)", exitDescription(d.waitErr))
		}
		c, err := net.DialTimeout("unix", sock, 250*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, failStart("strata daemon did not accept connections on %s within %s (last error: %v)", sock, readyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := grpc.DialContext(dctx,
		// The target is only a name: the dialer below ignores it. It is kept
		// free of '/' because grpc-go 1.33 sends the target as the HTTP/2
		// :authority, and Rust HTTP/2 servers reject an authority that looks
		// like a file path.
		"localhost",
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", sock)
		}),
	)
	if err != nil {
		return nil, nil, failStart("gRPC dial of %s failed: %v", sock, err)
	}

	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), backend)

	var once sync.Once
	var cleanupErr error
	cleanup := func() error {
		once.Do(func() { cleanupErr = stopStrata(ctx, d, conn) })
		return cleanupErr
	}
	return sn, cleanup, nil
}

// stopStrata closes the client connection, SIGTERMs the daemon and waits for it.
// It fails if the daemon died during the test, did not stop within
// stopTimeout, or exited with anything but status 0.
func stopStrata(ctx context.Context, d *daemon, conn *grpc.ClientConn) error {
	var errs []string
	if err := conn.Close(); err != nil {
		errs = append(errs, fmt.Sprintf("closing the gRPC connection: %v", err))
	}
	if d.exited() {
		errs = append(errs, fmt.Sprintf("strata daemon exited during the test, before SIGTERM (%s)", exitDescription(d.waitErr)))
	} else {
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			errs = append(errs, fmt.Sprintf("sending SIGTERM: %v", err))
		}
		select {
		case <-d.done:
			if d.waitErr != nil {
				errs = append(errs, fmt.Sprintf("strata daemon did not exit cleanly on SIGTERM (%s)", exitDescription(d.waitErr)))
			}
		case <-time.After(stopTimeout):
			d.kill()
			errs = append(errs, fmt.Sprintf("strata daemon did not exit within %s of SIGTERM; SIGKILLed it", stopTimeout))
		}
	}
	d.logFile.Close()

	t := testFromContext(ctx)
	saveLog(ctx, d, t)
	if len(errs) > 0 {
		return fmt.Errorf("%s\n----- daemon stderr -----\n%s\n----- end of daemon stderr -----", strings.Join(errs, "; "), d.stderr())
	}
	// The test itself failed (cleanup runs after the test body, but before the
	// suite deletes the temp dir): echo the daemon's stderr into the test log.
	if t != nil && t.Failed() {
		t.Logf("strata daemon stderr (%s):\n%s", strings.Join(d.cmd.Args, " "), d.stderr())
	}
	return nil
}

// saveLog copies the daemon's stderr to $STRATA_CONFORMANCE_LOGDIR, if set,
// because the suite removes the temp dir holding it.
func saveLog(ctx context.Context, d *daemon, t testing.TB) {
	dir := os.Getenv("STRATA_CONFORMANCE_LOGDIR")
	if dir == "" {
		return
	}
	name := filepath.Base(filepath.Dir(filepath.Dir(d.logPath))) // snapshot-suite-Strata-<backend>-NNN
	if t != nil {
		name = strings.ReplaceAll(t.Name(), "/", "_")
	}
	b, err := os.ReadFile(d.logPath)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name+".stderr"), b, 0644)
	}
	if err != nil {
		log.G(ctx).WithError(err).Warn("could not save the daemon log")
	}
}

// testFromContext recovers the subtest's testing.TB from the context the
// suite passes to the factory function. The suite does not pass the *testing.T
// itself; it only installs it in a logrus hook (log/logtest.WithT, an
// unexported struct testHook{t testing.TB; ...}). This is used solely to know
// whether the test failed (to echo the daemon's stderr) and its name; nil if
// the layout differs.
func testFromContext(ctx context.Context) (tb testing.TB) {
	defer func() {
		if recover() != nil {
			tb = nil
		}
	}()
	entry := log.G(ctx)
	if entry == nil || entry.Logger == nil {
		return nil
	}
	tbType := reflect.TypeOf((*testing.TB)(nil)).Elem()
	for _, hooks := range entry.Logger.Hooks {
		for _, h := range hooks {
			v := reflect.ValueOf(h)
			if v.Kind() != reflect.Ptr || v.IsNil() || v.Elem().Kind() != reflect.Struct {
				continue
			}
			fv := v.Elem().FieldByName("t")
			if !fv.IsValid() || fv.Type() != tbType {
				continue
			}
			fv = reflect.NewAt(fv.Type(), unsafe.Pointer(fv.UnsafeAddr())).Elem()
			if got, ok := fv.Interface().(testing.TB); ok && got != nil {
				return got
			}
		}
	}
	return nil
}
