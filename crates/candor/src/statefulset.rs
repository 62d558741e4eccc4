//! Membership that follows a Kubernetes StatefulSet (the Helm chart, `helm/candor`).
//!
//! Every member of a StatefulSet starts from one pod template, so what differs per pod
//! comes from its name, `NAME-ORDINAL`:
//!
//! * `--pod-name NAME-ORDINAL` without `--node-id`: the node id is `--node-id-base`
//!   (default 1) plus the ordinal, so pod `candor-2` is node 3;
//! * `--advertise-raft-addr HOST:PORT`: this member's Raft address as peers dial it (the
//!   pod's stable headless-Service name), added to `cluster.members` when the rendered
//!   list does not name this node (a pod added by scaling up);
//! * `--bootstrap-ordinal-zero`: only ordinal 0 bootstraps a brand-new deployment, and
//!   only when none of the `--join` members answers that it is already in the groups
//!   (pod 0 restarted on an empty volume rejoins instead of initializing anew);
//! * a member that starts on an empty volume while the groups still count it (a lost
//!   disk) is first removed from every group, then rejoins as a new member ([`prepare`]);
//! * `--join HOST:PORT` (repeat): once started, the member asks these members' admin
//!   service to add it to every group (idempotent: `unchanged` when it already votes),
//!   retrying with backoff until one accepts. Restarts of existing members are no-ops.
//!
//! Scaling down is `candor statefulset shrink --replicas N`: every member whose id is
//! past the last remaining ordinal is removed from every group, highest first. The
//! chart runs it in a pre-upgrade hook, before the StatefulSet loses the pods, so the
//! quorum never counts members that are already gone.

use anyhow::{Context, bail};
use candor_node::statefulset;
use clap::{Args, Subcommand};

use crate::cli::Role;
use crate::cmds::Failure;
use crate::config::{Config, MemberConfig, MemberRole};

/// Node ids a StatefulSet owns: `base ..= base + IDS_PER_SET - 1`.
const IDS_PER_SET: u64 = 1000;

/// `candor serve` flags for members run by a StatefulSet.
#[derive(Debug, Clone, Default, Args)]
pub struct StatefulSetArgs {
    /// The pod's name, `NAME-ORDINAL` (Kubernetes: `$(POD_NAME)` from the downward
    /// API). Without --node-id, the node id is --node-id-base plus ORDINAL.
    #[arg(long)]
    pub pod_name: Option<String>,
    /// Node id of ordinal 0 (give each StatefulSet of a deployment its own block of
    /// 1000 ids, e.g. 1 for shard members and 1001 for sequencer members).
    #[arg(long, default_value_t = 1)]
    pub node_id_base: u64,
    /// This member's Raft address as its peers dial it; added to the member list when
    /// the list does not name this node.
    #[arg(long)]
    pub advertise_raft_addr: Option<String>,
    /// With --pod-name: bootstrap a brand-new deployment when this pod is ordinal 0
    /// (a no-op once the groups exist).
    #[arg(long)]
    pub bootstrap_ordinal_zero: bool,
    /// A member's admin (Raft) address to ask to add this member to every group once
    /// it runs (repeat; tried in turn, retried until one accepts).
    #[arg(long = "join")]
    pub join: Vec<String>,
}

/// The ordinal of a StatefulSet pod name (`candor-12` → 12).
pub fn ordinal(pod_name: &str) -> anyhow::Result<u64> {
    let (_, n) = pod_name
        .rsplit_once('-')
        .with_context(|| format!("--pod-name {pod_name:?} is not NAME-ORDINAL"))?;
    let n: u64 = n
        .parse()
        .with_context(|| format!("--pod-name {pod_name:?}: ordinal {n:?} is not a number"))?;
    if n >= IDS_PER_SET {
        bail!("--pod-name {pod_name:?}: ordinal {n} is past the {IDS_PER_SET} ids of a set");
    }
    Ok(n)
}

/// Applies the StatefulSet flags to the loaded configuration (before it is checked).
pub fn apply(args: &StatefulSetArgs, role: Role, config: &mut Config) -> anyhow::Result<()> {
    if role == Role::Api {
        if args.pod_name.is_some() || !args.join.is_empty() || args.bootstrap_ordinal_zero {
            bail!(
                "--pod-name, --join and --bootstrap-ordinal-zero are for members, not --role api"
            );
        }
        return Ok(());
    }
    if args.node_id_base == 0 {
        bail!("--node-id-base must be > 0");
    }
    let c = &mut config.cluster;
    let ordinal = match &args.pod_name {
        Some(name) => Some(ordinal(name)?),
        None if args.bootstrap_ordinal_zero => {
            bail!("--bootstrap-ordinal-zero needs --pod-name")
        }
        None => None,
    };
    if let Some(n) = ordinal {
        if c.node_id == 0 {
            c.node_id = args.node_id_base + n;
        }
        if args.bootstrap_ordinal_zero && n == 0 {
            c.bootstrap = true;
        }
    }
    if let Some(addr) = &args.advertise_raft_addr {
        if c.node_id == 0 {
            bail!("--advertise-raft-addr needs the node id (--node-id or --pod-name)");
        }
        match c.members.iter().find(|m| m.id == c.node_id) {
            Some(m) if m.raft_addr != *addr => bail!(
                "--advertise-raft-addr {addr} but cluster.members gives node {} the address {}",
                c.node_id,
                m.raft_addr
            ),
            Some(_) => {}
            None => c.members.push(MemberConfig {
                id: c.node_id,
                raft_addr: addr.clone(),
                role: match role {
                    Role::Shard => MemberRole::Shard,
                    Role::Sequencer => MemberRole::Sequencer,
                    Role::All | Role::Api => MemberRole::All,
                },
                shards: None,
            }),
        }
    }
    if !args.join.is_empty() && !c.members.iter().any(|m| m.id == c.node_id) {
        bail!(
            "--join: node {} is not in cluster.members; pass --advertise-raft-addr",
            c.node_id
        );
    }
    Ok(())
}

/// Before the node starts, with `--join` members: asks each for its own view (3 s
/// each) until one answers.
///
/// * If the deployment exists (the peer is in a group), a `bootstrap` member does not
///   bootstrap (pod 0 restarted with an empty volume joins instead).
/// * If this member's store is new (an empty volume) but running groups (with a
///   leader) still count it as a member, it lost its log: it is removed from every
///   group first, so that it rejoins as a new learner rather than as a voter that
///   forgot what it accepted (which Raft does not allow; openraft's leader stops the
///   group on seeing it).
pub async fn prepare(args: &StatefulSetArgs, config: &mut Config) -> anyhow::Result<()> {
    if args.join.is_empty() {
        return Ok(());
    }
    let node_id = config.cluster.node_id;
    let fresh = !config.data_dir.join("store").exists();
    let own = config
        .cluster
        .members
        .iter()
        .find(|m| m.id == node_id)
        .map(|m| m.raft_addr.clone())
        .unwrap_or_default();
    let tls = crate::tls::cluster_tls(config)?.map(|t| t.client_tls());
    let peers: Vec<String> = args.join.iter().filter(|a| **a != own).cloned().collect();
    let Some((via, member)) = statefulset::ask_peers(&peers, node_id, tls.clone()).await else {
        return Ok(());
    };
    if config.cluster.bootstrap {
        tracing::warn!(via = %via, "the deployment exists already: not bootstrapping, joining it");
        config.cluster.bootstrap = false;
    }
    if fresh && member {
        tracing::warn!(
            node = node_id,
            "this member's store is empty but the groups still count it: removing it \
             from every group before it rejoins"
        );
        statefulset::remove_self(&peers, node_id, tls).await;
    }
    Ok(())
}

/// Starts the `--join` task: asks the `--join` members in turn to add this member to
/// every group, with backoff (1 s doubling to 30 s), until one succeeds. Runs beside
/// the node; a member not yet added stays idle and not ready meanwhile.
pub fn spawn_join(
    runtime: &tokio::runtime::Runtime,
    args: &StatefulSetArgs,
    config: &Config,
) -> anyhow::Result<()> {
    if args.join.is_empty() {
        return Ok(());
    }
    let node_id = config.cluster.node_id;
    let addr = config
        .cluster
        .members
        .iter()
        .find(|m| m.id == node_id)
        .map(|m| m.raft_addr.clone())
        .context("--join: this node is not in cluster.members")?;
    let tls = crate::tls::cluster_tls(config)?.map(|t| t.client_tls());
    // Asking oneself goes nowhere before the node is in the groups.
    let peers: Vec<String> = args.join.iter().filter(|a| **a != addr).cloned().collect();
    if peers.is_empty() {
        return Ok(());
    }
    let _guard = runtime.enter();
    statefulset::spawn_join(peers, node_id, addr, tls);
    Ok(())
}

/// `candor statefulset ...`.
#[derive(Debug, Args)]
pub struct StatefulSetCmd {
    /// Admin (Raft) address of a member that stays, HOST:PORT (repeat: tried in turn).
    #[arg(long = "admin", required = true)]
    pub admin: Vec<String>,
    #[command(flatten)]
    pub tls: crate::tls::ClientTlsArgs,
    #[command(subcommand)]
    pub what: StatefulSetCommand,
}

#[derive(Debug, Subcommand)]
pub enum StatefulSetCommand {
    /// Remove from every group each member past the last remaining ordinal (ids
    /// BASE+REPLICAS ..= BASE+999), highest first. Run it before the StatefulSet
    /// shrinks. Members already gone from the groups are skipped.
    Shrink {
        /// The replica count the StatefulSet is scaled down to (>= 1).
        #[arg(long)]
        replicas: u64,
        /// Node id of ordinal 0 (as --node-id-base of the members).
        #[arg(long, default_value_t = 1)]
        node_id_base: u64,
    },
}

pub async fn run(cmd: StatefulSetCmd) -> Result<(), Failure> {
    let StatefulSetCommand::Shrink {
        replicas,
        node_id_base,
    } = cmd.what;
    if replicas == 0 || replicas >= IDS_PER_SET || node_id_base == 0 {
        return Err(Failure::usage(anyhow::anyhow!(
            "--replicas must be 1..{IDS_PER_SET} and --node-id-base > 0"
        )));
    }
    let tls = cmd.tls.config().map_err(Failure::usage)?;
    let keep_below = node_id_base + replicas;
    let last = node_id_base + IDS_PER_SET - 1;
    let mut errors = Vec::new();
    for admin in &cmd.admin {
        match statefulset::shrink(admin, tls.clone(), keep_below, last).await {
            Ok(removed) => {
                if removed.is_empty() {
                    println!("no member with an id in {keep_below}..={last}: nothing to remove");
                } else {
                    println!("removed members {removed:?} (their pods may stop now)");
                }
                return Ok(());
            }
            Err(e) => {
                eprintln!("{admin}: {e:#}");
                errors.push(format!("{admin}: {e:#}"));
            }
        }
    }
    Err(Failure::transport(format!(
        "error: no --admin member completed the shrink: {}",
        errors.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pod: &str) -> StatefulSetArgs {
        StatefulSetArgs {
            pod_name: Some(pod.into()),
            node_id_base: 1,
            advertise_raft_addr: Some(format!("{pod}.candor-headless:8701")),
            bootstrap_ordinal_zero: true,
            join: vec!["candor-0.candor-headless:8701".into()],
        }
    }

    #[test]
    fn pod_name_gives_node_id_address_and_bootstrap() {
        let mut c = Config::default();
        c.cluster.members = vec![MemberConfig {
            id: 1,
            raft_addr: "candor-0.candor-headless:8701".into(),
            role: MemberRole::All,
            shards: None,
        }];
        let mut first = c.clone();
        apply(&args("candor-0"), Role::All, &mut first).unwrap();
        assert_eq!((first.cluster.node_id, first.cluster.bootstrap), (1, true));
        assert_eq!(first.cluster.members.len(), 1);

        let mut scaled = c.clone();
        apply(&args("candor-3"), Role::All, &mut scaled).unwrap();
        assert_eq!(
            (scaled.cluster.node_id, scaled.cluster.bootstrap),
            (4, false)
        );
        assert_eq!(
            scaled.cluster.members[1].raft_addr,
            "candor-3.candor-headless:8701"
        );

        let mut seq = c.clone();
        let a = StatefulSetArgs {
            node_id_base: 1001,
            ..args("seq-2")
        };
        apply(&a, Role::Sequencer, &mut seq).unwrap();
        assert_eq!(seq.cluster.node_id, 1003);
        assert_eq!(seq.cluster.members[1].role, MemberRole::Sequencer);

        let mut wrong = c.clone();
        let a = StatefulSetArgs {
            advertise_raft_addr: Some("elsewhere:8701".into()),
            ..args("candor-0")
        };
        let e = apply(&a, Role::All, &mut wrong).unwrap_err();
        assert!(e.to_string().contains("gives node 1 the address"), "{e}");
    }

    #[test]
    fn bad_pod_names_are_refused() {
        for bad in ["candor", "candor-x", "candor-1000", "-"] {
            assert!(ordinal(bad).is_err(), "{bad}");
        }
        assert_eq!(ordinal("my-candor-12").unwrap(), 12);
        let mut c = Config::default();
        let e = apply(&args("candor-0"), Role::Api, &mut c).unwrap_err();
        assert!(e.to_string().contains("not --role api"), "{e}");
    }
}
