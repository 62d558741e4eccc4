//! Membership calls of members run by a Kubernetes StatefulSet (`helm/candor`): a
//! member that starts asks its peers whether the deployment exists and whether it
//! still counts as a member ([`ask_peers`]), removes itself when it lost its store
//! ([`remove_self`]), asks to be added to every group ([`spawn_join`]); and the
//! pre-upgrade shrink removes the members past the last remaining ordinal
//! ([`shrink`]). All go to the peers' admin service on the Raft port ([`crate::admin`]).

use std::time::Duration;

use candor_proto::admin::v1 as pb;
use pb::cluster_admin_client::ClusterAdminClient;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::NodeError;

fn peer_err(addr: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::Peer(format!("{addr}: {e}"))
}

fn status_err(what: &str, s: &tonic::Status) -> NodeError {
    NodeError::Peer(format!("{what}: {:?}: {}", s.code(), s.message()))
}

/// A client of the admin service at `addr` (`HOST:PORT`), 5 s to connect.
pub async fn admin_client(
    addr: &str,
    tls: Option<ClientTlsConfig>,
) -> Result<ClusterAdminClient<Channel>, NodeError> {
    let uri =
        candor_raft::grpc::endpoint_uri_with(addr, tls.is_some()).map_err(|e| peer_err(addr, e))?;
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| peer_err(addr, format!("bad address: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| peer_err(addr, format!("TLS settings: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| peer_err(addr, format!("cannot reach: {e}")))?;
    Ok(ClusterAdminClient::new(channel))
}

/// Asks each peer in turn (3 s each) for its own view until one answers that the
/// deployment exists. Returns that peer and whether a running group (one with a
/// leader) counts `node_id` as a member; `None` when no peer knows a deployment.
pub async fn ask_peers(
    peers: &[String],
    node_id: u64,
    tls: Option<ClientTlsConfig>,
) -> Option<(String, bool)> {
    for peer in peers {
        let asked = tokio::time::timeout(Duration::from_secs(3), async {
            let mut client = admin_client(peer, tls.clone()).await?;
            let r = client
                .status(pb::StatusRequest { local_only: true })
                .await
                .map_err(|s| status_err("status", &s))?
                .into_inner();
            let exists = r.groups.iter().any(|g| !g.members.is_empty());
            // Only a running leader remembers how far this member's log went; with no
            // leader (a whole deployment restarting, a restore) a new one starts afresh.
            let member = r
                .groups
                .iter()
                .any(|g| g.leader != 0 && g.members.iter().any(|m| m.node_id == node_id));
            Ok::<_, NodeError>((exists, member))
        })
        .await;
        match asked {
            Ok(Ok((true, member))) => return Some((peer.clone(), member)),
            Ok(Ok((false, _))) => {}
            Ok(Err(e)) => tracing::info!(via = %peer, error = %e, "peer not answering"),
            Err(_) => tracing::info!(via = %peer, "peer did not answer in time"),
        }
    }
    None
}

/// Removes `node_id` from every group through any of `peers`, retrying with backoff
/// for up to 60 s: a member that lost its store must rejoin as a new learner, not as
/// a voter that forgot what it accepted (which Raft does not allow). Returns whether
/// the removal went through (or the member was already gone).
pub async fn remove_self(peers: &[String], node_id: u64, tls: Option<ClientTlsConfig>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        for peer in peers {
            let removed = tokio::time::timeout(Duration::from_secs(20), async {
                let mut client = admin_client(peer, tls.clone()).await?;
                match client
                    .remove_member(pb::RemoveMemberRequest {
                        node_id,
                        groups: Vec::new(),
                        forwarded: false,
                    })
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
                    Err(s) => Err(status_err("remove-member", &s)),
                }
            })
            .await;
            match removed {
                Ok(Ok(())) => {
                    tracing::info!(node = node_id, via = %peer, "removed from every group; rejoining");
                    return true;
                }
                Ok(Err(e)) => tracing::warn!(via = %peer, error = %e, "removal failed, retrying"),
                Err(_) => tracing::warn!(via = %peer, "removal timed out, retrying"),
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    tracing::error!(
        node = node_id,
        "could not remove this member before it rejoins (no quorum?): starting anyway"
    );
    false
}

/// Asks `peers` in turn to add `node_id` (Raft address `addr`) to every group, with
/// backoff (1 s doubling to 30 s), until one succeeds. Runs beside the node; a member
/// not yet added stays idle and not ready meanwhile. Call inside a tokio runtime.
pub fn spawn_join(
    peers: Vec<String>,
    node_id: u64,
    addr: String,
    tls: Option<ClientTlsConfig>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        let mut attempt = 0u32;
        loop {
            for peer in &peers {
                attempt += 1;
                match add_self(peer, node_id, &addr, tls.clone()).await {
                    Ok(changed) => {
                        tracing::info!(node = node_id, via = %peer, changed, "joined the cluster (member of every group)");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(node = node_id, via = %peer, attempt, error = %e, "join: not added yet, retrying");
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    })
}

/// One add-member request; `Ok(true)` when some group changed.
async fn add_self(
    peer: &str,
    node_id: u64,
    addr: &str,
    tls: Option<ClientTlsConfig>,
) -> Result<bool, NodeError> {
    let mut client = admin_client(peer, tls).await?;
    let r = client
        .add_member(pb::AddMemberRequest {
            node_id,
            raft_addr: addr.to_string(),
            groups: Vec::new(),
            max_lag: 0,
            catch_up_timeout_ms: 0,
            forwarded: false,
        })
        .await
        .map_err(|s| status_err("add-member", &s))?
        .into_inner();
    Ok(r.groups.iter().any(|g| g.changed))
}

/// Through the member at `admin`: removes from every group each member whose id is
/// in `keep_below..=last`, highest first (members already gone are skipped). Returns
/// the ids removed.
pub async fn shrink(
    admin: &str,
    tls: Option<ClientTlsConfig>,
    keep_below: u64,
    last: u64,
) -> Result<Vec<u64>, NodeError> {
    let mut client = admin_client(admin, tls).await?;
    let status = client
        .status(pb::StatusRequest { local_only: false })
        .await
        .map_err(|s| status_err("status", &s))?
        .into_inner();
    let mut ids: Vec<u64> = status
        .groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.node_id))
        .filter(|id| (keep_below..=last).contains(id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut removed = Vec::new();
    for id in ids.into_iter().rev() {
        match client
            .remove_member(pb::RemoveMemberRequest {
                node_id: id,
                groups: Vec::new(),
                forwarded: false,
            })
            .await
        {
            Ok(_) => {
                tracing::info!(node = id, "removed from every group");
                removed.push(id);
            }
            // Already gone (a repeated or concurrent shrink).
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(status_err(&format!("remove-member {id}"), &s)),
        }
    }
    Ok(removed)
}
