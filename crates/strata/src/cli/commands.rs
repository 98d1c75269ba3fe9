//! Each client subcommand: the requests it makes and the text it returns for stdout.

use strata_core::snapshot::Labels;
use strata_core::{Info, Kind};
use strata_grpc::client::Code;

use super::args::*;
use super::mounts::{MountJson, command_line, too_long_for_mount2};
use super::render::{
    InfoJson, UsageReport, UsageRow, UsageTotal, info_text, json, labels_text, ls_table,
    usage_table,
};
use super::rpc::{Context, connect, update_labels};
use super::{CliError, mounts, tree};

/// Runs `command`; returns what it prints on success.
pub async fn run(command: ClientCommand) -> Result<String, CliError> {
    match command {
        ClientCommand::Ls(a) => ls(a).await,
        ClientCommand::Tree(a) => tree(a).await,
        ClientCommand::Info(a) => info(a).await,
        ClientCommand::Usage(a) => usage(a).await,
        ClientCommand::Prepare(a) => create(Kind::Active, a).await,
        ClientCommand::View(a) => create(Kind::View, a).await,
        ClientCommand::Commit(a) => commit(a).await,
        ClientCommand::Rm(a) => rm(a).await,
        ClientCommand::Label(a) => label(a).await,
        ClientCommand::Mounts(a) => mounts(a).await,
        ClientCommand::Cleanup(a) => cleanup(a).await,
        ClientCommand::Mount(a) => mount(a).await,
        ClientCommand::Umount(a) => {
            mounts::unmount(&a.target, a.lazy)?;
            Ok(String::new())
        }
    }
}

async fn ls(a: LsArgs) -> Result<String, CliError> {
    let client = connect(&a.client).await?;
    let filters: Vec<&str> = a
        .filters
        .iter()
        .chain(&a.more_filters)
        .map(String::as_str)
        .collect();
    let infos = client.list(&filters).await.what(|| "ls".into())?;
    Ok(if a.json.json {
        json(&infos.iter().map(InfoJson::from).collect::<Vec<_>>())
    } else {
        ls_table(&infos)
    })
}

async fn tree(a: TreeArgs) -> Result<String, CliError> {
    let client = connect(&a.client).await?;
    let infos = client.list(&[]).await.what(|| "tree".into())?;
    let roots = tree::build(&infos);
    Ok(if a.json.json {
        json(&roots)
    } else {
        tree::render(&roots)
    })
}

async fn info(a: KeyArgs) -> Result<String, CliError> {
    let client = connect(&a.client).await?;
    let info = client
        .stat(&a.key)
        .await
        .what(|| format!("info {}", a.key))?;
    Ok(if a.json.json {
        json(&InfoJson::from(&info))
    } else {
        info_text(&info)
    })
}

async fn usage(a: UsageArgs) -> Result<String, CliError> {
    let client = connect(&a.client).await?;
    if let Some(key) = &a.key {
        let usage = client.usage(key).await.what(|| format!("usage {key}"))?;
        let row = UsageRow::new(key, None, usage);
        return Ok(if a.json.json {
            json(&row)
        } else {
            usage_table(&[row], None, a.bytes)
        });
    }
    let infos = client.list(&[]).await.what(|| "usage".into())?;
    let mut rows = Vec::with_capacity(infos.len());
    let mut total = UsageTotal::default();
    for info in &infos {
        let usage = match client.usage(&info.name).await {
            Ok(u) => u,
            // Removed since the listing: not an error, just no longer there.
            Err(e) if e.code() == Code::NotFound => continue,
            Err(e) => return Err(e).what(|| format!("usage {}", info.name)),
        };
        total.snapshots += 1;
        total.size += usage.size;
        total.inodes += usage.inodes;
        rows.push(UsageRow::new(&info.name, Some(info.kind), usage));
    }
    Ok(if a.json.json {
        json(&UsageReport {
            snapshots: rows,
            total,
        })
    } else {
        usage_table(&rows, Some(&total), a.bytes)
    })
}

/// `k=v` arguments as labels; `k=` gives an empty value (a removal, for Update).
fn parse_labels(args: &[String]) -> Result<Labels, CliError> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(CliError::Usage(format!(
                "label {arg:?} is not of the form KEY=VALUE (KEY= removes the label)"
            ))),
        })
        .collect()
}

async fn create(kind: Kind, a: CreateArgs) -> Result<String, CliError> {
    let labels = parse_labels(&a.labels)?;
    let client = connect(&a.client).await?;
    let (verb, result) = if kind == Kind::View {
        ("view", client.view(&a.key, &a.parent, labels).await)
    } else {
        ("prepare", client.prepare(&a.key, &a.parent, labels).await)
    };
    let mounts = result.what(|| format!("{verb} {}", a.key))?;
    Ok(if a.mounts {
        mount_lines(&mounts, &a.target)
    } else {
        String::new()
    })
}

async fn commit(a: CommitArgs) -> Result<String, CliError> {
    let labels = parse_labels(&a.labels)?;
    let client = connect(&a.client).await?;
    client
        .commit(&a.name, &a.key, labels, None)
        .await
        .what(|| format!("commit {} {}", a.name, a.key))?;
    Ok(String::new())
}

async fn rm(a: RmArgs) -> Result<String, CliError> {
    let client = connect(&a.client).await?;
    if let [key] = a.keys.as_slice() {
        client.remove(key).await.what(|| format!("rm {key}"))?;
        return Ok(String::new());
    }
    // Remove what can be removed, say what could not.
    let mut failed = 0;
    for key in &a.keys {
        if let Err(e) = client.remove(key).await.what(|| format!("rm {key}")) {
            eprintln!("strata: {e}");
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(CliError::Reported(format!(
            "rm: {failed} of {} snapshots not removed",
            a.keys.len()
        )));
    }
    Ok(String::new())
}

async fn label(a: LabelArgs) -> Result<String, CliError> {
    let changes = parse_labels(&a.labels)?;
    let client = connect(&a.client).await?;
    let info: Info = update_labels(&client, &a.key, changes)
        .await
        .what(|| format!("label {}", a.key))?;
    Ok(if a.json.json {
        json(&InfoJson::from(&info))
    } else {
        labels_text(&info.labels, "")
    })
}

fn mount_lines(mounts: &[strata_core::Mount], target: &str) -> String {
    for m in mounts.iter().filter(|m| too_long_for_mount2(m)) {
        eprintln!(
            "strata: note: the {} mount's options are {} bytes, more than the 4096-byte page \
             mount(2) accepts; `strata mount` mounts it through the new mount API",
            m.kind,
            m.options.join(",").len()
        );
    }
    mounts
        .iter()
        .map(|m| command_line(m, target) + "\n")
        .collect()
}

async fn mounts(a: MountsArgs) -> Result<String, CliError> {
    let client = connect(&a.client).await?;
    let mounts = client
        .mounts(&a.key)
        .await
        .what(|| format!("mounts {}", a.key))?;
    Ok(if a.json.json {
        json(
            &mounts
                .iter()
                .map(|m| MountJson {
                    kind: &m.kind,
                    source: &m.source,
                    options: &m.options,
                    command: command_line(m, &a.target),
                })
                .collect::<Vec<_>>(),
        )
    } else {
        mount_lines(&mounts, &a.target)
    })
}

async fn cleanup(a: CleanupArgs) -> Result<String, CliError> {
    let client = connect(&a.client).await?;
    client.cleanup().await.what(|| "cleanup".into())?;
    Ok(String::new())
}

async fn mount(a: MountArgs) -> Result<String, CliError> {
    let client = connect(&a.client).await?;
    let list = client
        .mounts(&a.key)
        .await
        .what(|| format!("mount {}", a.key))?;
    mounts::perform(&list, &a.target)?;
    Ok(String::new())
}
