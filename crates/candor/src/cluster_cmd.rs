//! `candor cluster status | add-member | remove-member | move-replica`: drive the
//! `candor.admin.v1.ClusterAdmin` service of any member (its Raft port).

use std::time::Duration;

use candor_proto::admin::v1 as pb;
use clap::{Args, Subcommand};
use pb::cluster_admin_client::ClusterAdminClient;
use serde_json::{Value, json};
use tonic::transport::Endpoint;

use crate::cmds::Failure;

/// `candor cluster`: inspect and change the membership of the Raft groups, online.
/// Send requests to any current member's Raft port; it runs each group's change on
/// that group's leader.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// A member's Raft (admin) address, HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "CANDOR_ADMIN",
        default_value = "127.0.0.1:8701"
    )]
    pub admin: String,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub tls: crate::tls::ClientTlsArgs,
    #[command(subcommand)]
    pub what: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every group: leader, term, voters and learners, each member's replication
    /// progress (as the leader sees it) and applied index (as it reports it).
    Status {
        /// Only the asked member's own view (no questions to the other members).
        #[arg(long)]
        local: bool,
    },
    /// Add a running member (started without --bootstrap) to every group: as a
    /// learner, then, once caught up, as a voter.
    AddMember {
        /// The new member's node id.
        node_id: u64,
        /// Its Raft address, HOST:PORT, as the other members reach it.
        #[arg(long)]
        raft_addr: String,
        /// Only these groups (repeat) [default: every group].
        #[arg(long = "group")]
        groups: Vec<u64>,
        /// Promote once within this many log entries of the leader [default: 64].
        #[arg(long)]
        max_lag: Option<u64>,
        /// Give up catching up after this long, per group, e.g. 5m [default: 120s].
        #[arg(long, value_parser = humantime::parse_duration)]
        catch_up_timeout: Option<Duration>,
    },
    /// Remove a member from every group (then stop its process).
    RemoveMember {
        /// The member's node id.
        node_id: u64,
        /// Only these groups (repeat) [default: every group].
        #[arg(long = "group")]
        groups: Vec<u64>,
    },
    /// Move one group's replica from one member to another.
    MoveReplica {
        /// The group: a shard number, or 4294967296 (2^32) for the sequencer.
        #[arg(long)]
        group: u64,
        /// The voter giving up its replica.
        #[arg(long)]
        from: u64,
        /// The member taking it over.
        #[arg(long)]
        to: u64,
        /// The target's Raft address [default: as recorded in any group].
        #[arg(long)]
        to_raft_addr: Option<String>,
        /// As for add-member.
        #[arg(long)]
        max_lag: Option<u64>,
        /// As for add-member.
        #[arg(long, value_parser = humantime::parse_duration)]
        catch_up_timeout: Option<Duration>,
    },
}

fn transport_failure(msg: String) -> Failure {
    Failure::transport(format!("error: cannot reach the member: {msg}"))
}

fn status_failure(s: tonic::Status) -> Failure {
    // A plaintext call to a port that speaks TLS ends with the connection cut, which
    // tonic reports as a cancelled or unknown call: say what usually causes that.
    let hint = if matches!(s.code(), tonic::Code::Cancelled | tonic::Code::Unknown) {
        " (if the members run with tls.cluster = true, pass --tls-ca, --tls-cert and --tls-key)"
    } else {
        ""
    };
    Failure::transport(format!(
        "error: the member answered {:?}: {}{hint}",
        s.code(),
        s.message()
    ))
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub async fn run(args: ClusterArgs) -> Result<(), Failure> {
    let tls = args.tls.config().map_err(Failure::usage)?;
    let uri = candor_raft::grpc::endpoint_uri_with(&args.admin, tls.is_some())
        .map_err(|e| Failure::usage(anyhow::anyhow!("--admin: {e}")))?;
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Failure::usage(anyhow::anyhow!("--admin: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Failure::usage(anyhow::anyhow!("TLS settings: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| transport_failure(format!("{}: {e}", args.admin)))?;
    let mut client = ClusterAdminClient::new(channel);
    match args.what {
        ClusterCommand::Status { local } => {
            let r = client
                .status(pb::StatusRequest { local_only: local })
                .await
                .map_err(status_failure)?
                .into_inner();
            if args.json {
                println!("{}", status_json(&r));
            } else {
                print!("{}", status_text(&r));
            }
        }
        ClusterCommand::AddMember {
            node_id,
            raft_addr,
            groups,
            max_lag,
            catch_up_timeout,
        } => {
            let r = client
                .add_member(pb::AddMemberRequest {
                    node_id,
                    raft_addr,
                    groups,
                    max_lag: max_lag.unwrap_or(0),
                    catch_up_timeout_ms: ms(catch_up_timeout),
                    forwarded: false,
                })
                .await
                .map_err(status_failure)?
                .into_inner();
            print_change(&r, args.json, &format!("added member {node_id}"));
        }
        ClusterCommand::RemoveMember { node_id, groups } => {
            let r = client
                .remove_member(pb::RemoveMemberRequest {
                    node_id,
                    groups,
                    forwarded: false,
                })
                .await
                .map_err(status_failure)?
                .into_inner();
            print_change(
                &r,
                args.json,
                &format!("removed member {node_id} (stop its process now)"),
            );
        }
        ClusterCommand::MoveReplica {
            group,
            from,
            to,
            to_raft_addr,
            max_lag,
            catch_up_timeout,
        } => {
            let r = client
                .move_replica(pb::MoveReplicaRequest {
                    group,
                    from_node: from,
                    to_node: to,
                    to_raft_addr: to_raft_addr.unwrap_or_default(),
                    max_lag: max_lag.unwrap_or(0),
                    catch_up_timeout_ms: ms(catch_up_timeout),
                    forwarded: false,
                })
                .await
                .map_err(status_failure)?
                .into_inner();
            print_change(
                &r,
                args.json,
                &format!("moved group {group}'s replica from {from} to {to}"),
            );
        }
    }
    Ok(())
}

fn group_name(group: u64, kind: &str) -> String {
    if kind == "sequencer" || group == 1 << 32 {
        "sequencer".into()
    } else {
        format!("shard {group}")
    }
}

fn role_name(role: i32) -> &'static str {
    match pb::MemberRole::try_from(role) {
        Ok(pb::MemberRole::Voter) => "voter",
        Ok(pb::MemberRole::Learner) => "learner",
        _ => "unknown",
    }
}

fn status_json(r: &pb::StatusResponse) -> Value {
    json!({
        "node_id": r.node_id,
        "unreachable": r.unreachable,
        "groups": r.groups.iter().map(|g| json!({
            "group": g.group,
            "kind": g.kind,
            "reported_by": g.reported_by,
            "leader": (g.leader != 0).then_some(g.leader),
            "term": g.term,
            "changing": g.changing,
            "last_log_index": g.last_log_index,
            "committed": g.committed,
            "voters": g.members.iter().filter(|m| m.role == pb::MemberRole::Voter as i32).map(|m| m.node_id).collect::<Vec<_>>(),
            "learners": g.members.iter().filter(|m| m.role == pb::MemberRole::Learner as i32).map(|m| m.node_id).collect::<Vec<_>>(),
            "members": g.members.iter().map(|m| json!({
                "node_id": m.node_id,
                "raft_addr": m.raft_addr,
                "role": role_name(m.role),
                "matched_index": m.matched_index,
                "applied_index": m.applied_index,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn status_text(r: &pb::StatusResponse) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut s = format!("asked member {}\n", r.node_id);
    if !r.unreachable.is_empty() {
        s.push_str(&format!("unreachable members: {:?}\n", r.unreachable));
    }
    for g in &r.groups {
        let leader = if g.leader == 0 {
            "none".to_string()
        } else {
            g.leader.to_string()
        };
        s.push_str(&format!(
            "{:<10} leader {leader:<5} term {:<4} last log {:<8} committed {:<8}{}{}\n",
            group_name(g.group, &g.kind),
            g.term,
            g.last_log_index,
            g.committed,
            if g.changing { " CHANGING" } else { "" },
            if g.members.is_empty() {
                " (this member is not in the group)"
            } else {
                ""
            },
        ));
        for m in &g.members {
            s.push_str(&format!(
                "    node {:<4} {:<8} {:<22} matched {:<8} applied {}\n",
                m.node_id,
                role_name(m.role),
                m.raft_addr,
                opt(m.matched_index),
                opt(m.applied_index),
            ));
        }
    }
    s
}

fn print_change(r: &pb::ChangeResponse, as_json: bool, done: &str) {
    if as_json {
        let v = json!({
            "groups": r.groups.iter().map(|g| json!({
                "group": g.group,
                "changed": g.changed,
                "voters": g.voters,
                "learners": g.learners,
                "leader": g.leader,
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return;
    }
    for g in &r.groups {
        println!(
            "{:<10} {:<9} voters {:?} learners {:?} (leader {})",
            group_name(g.group, ""),
            if g.changed { "changed" } else { "unchanged" },
            g.voters,
            g.learners,
            g.leader
        );
    }
    println!("{done}");
}
