//! The embedded descriptor set decodes, holds both services with every RPC,
//! and documents every service, RPC, message and field (other teams generate
//! clients from these files, so an undocumented field is a bug).

use candor_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

fn file<'a>(set: &'a FileDescriptorSet, name: &str) -> &'a FileDescriptorProto {
    set.file
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("{name} missing from descriptor set"))
}

fn methods(file: &FileDescriptorProto, service: &str) -> Vec<String> {
    let svc = file
        .service
        .iter()
        .find(|s| s.name() == service)
        .unwrap_or_else(|| panic!("service {service} missing"));
    svc.method.iter().map(|m| m.name().to_owned()).collect()
}

#[test]
fn descriptor_set_contains_both_services() {
    let set = descriptor_set();
    assert_eq!(set.file.len(), 3, "only our three files, no imports");

    let kt = file(&set, "candor/v1/candor.proto");
    assert_eq!(kt.package(), "candor.v1");
    assert_eq!(kt.syntax(), "proto3");
    assert_eq!(
        methods(kt, "KeyTransparency"),
        [
            "Publish",
            "Erase",
            "PublishBatch",
            "Lookup",
            "History",
            "GetConfig",
            "GetEpoch",
            "GetLatestEpoch",
            "WatchEpochs",
            "Consistency",
            "Audit",
            "SubmitCosignature",
            "GetCosignatures",
            "GetCheckpoint",
        ]
    );
    let watch = kt.service[0]
        .method
        .iter()
        .find(|m| m.name() == "WatchEpochs")
        .unwrap();
    assert!(watch.server_streaming() && !watch.client_streaming());

    let raft = file(&set, "candor/v1/raft.proto");
    assert_eq!(raft.package(), "candor.raft.v1");
    assert_eq!(methods(raft, "RaftTransport"), ["Call", "Status"]);
    assert_eq!(raft.service.len(), 1, "only RaftTransport");

    let admin = file(&set, "candor/v1/admin.proto");
    assert_eq!(admin.package(), "candor.admin.v1");
    assert_eq!(
        methods(admin, "ClusterAdmin"),
        ["Status", "AddMember", "RemoveMember", "MoveReplica"]
    );
}

#[test]
fn service_name_constants_match_descriptors() {
    let set = descriptor_set();
    let full = |path: &str, svc: usize| {
        let f = file(&set, path);
        format!("{}.{}", f.package(), f.service[svc].name())
    };
    assert_eq!(
        full("candor/v1/candor.proto", 0),
        candor_proto::KEY_TRANSPARENCY_SERVICE
    );
    assert_eq!(
        full("candor/v1/raft.proto", 0),
        candor_proto::RAFT_TRANSPORT_SERVICE
    );
    assert_eq!(
        full("candor/v1/admin.proto", 0),
        candor_proto::CLUSTER_ADMIN_SERVICE
    );
    // The generated servers register under the same names.
    use tonic::server::NamedService;
    type Kt = candor_proto::candor::v1::key_transparency_server::KeyTransparencyServer<()>;
    type Raft = candor_proto::raft::v1::raft_transport_server::RaftTransportServer<()>;
    assert_eq!(
        <Kt as NamedService>::NAME,
        candor_proto::KEY_TRANSPARENCY_SERVICE
    );
    assert_eq!(
        <Raft as NamedService>::NAME,
        candor_proto::RAFT_TRANSPORT_SERVICE
    );
}

/// Source-info paths (descriptor.proto field numbers).
const MESSAGE_TYPE: i32 = 4;
const MESSAGE_FIELD: i32 = 2;
const SERVICE: i32 = 6;
const SERVICE_METHOD: i32 = 2;

fn leading_comment<'a>(file: &'a FileDescriptorProto, path: &[i32]) -> Option<&'a str> {
    file.source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|l| l.path == path)
        .and_then(|l| l.leading_comments.as_deref())
        .filter(|c| !c.trim().is_empty())
}

#[test]
fn every_element_is_documented() {
    let set = descriptor_set();
    let mut undocumented = Vec::new();
    for f in &set.file {
        for (i, svc) in f.service.iter().enumerate() {
            let i = i32::try_from(i).unwrap();
            if leading_comment(f, &[SERVICE, i]).is_none() {
                undocumented.push(format!("service {}", svc.name()));
            }
            for (j, m) in svc.method.iter().enumerate() {
                let j = i32::try_from(j).unwrap();
                if leading_comment(f, &[SERVICE, i, SERVICE_METHOD, j]).is_none() {
                    undocumented.push(format!("rpc {}.{}", svc.name(), m.name()));
                }
            }
        }
        // Top-level messages only: the protos define no nested messages.
        for (i, msg) in f.message_type.iter().enumerate() {
            assert!(msg.nested_type.is_empty(), "nested messages not checked");
            let i = i32::try_from(i).unwrap();
            if leading_comment(f, &[MESSAGE_TYPE, i]).is_none() {
                undocumented.push(format!("message {}", msg.name()));
            }
            for (j, field) in msg.field.iter().enumerate() {
                let j = i32::try_from(j).unwrap();
                if leading_comment(f, &[MESSAGE_TYPE, i, MESSAGE_FIELD, j]).is_none() {
                    undocumented.push(format!("field {}.{}", msg.name(), field.name()));
                }
            }
        }
    }
    assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
}

#[test]
fn rpcs_document_their_error_statuses() {
    // Every KeyTransparency RPC that takes caller input names the statuses
    // it returns; GetConfig and GetLatestEpoch take none worth rejecting.
    let set = descriptor_set();
    let f = file(&set, "candor/v1/candor.proto");
    for (j, m) in f.service[0].method.iter().enumerate() {
        let c = leading_comment(f, &[SERVICE, 0, SERVICE_METHOD, i32::try_from(j).unwrap()])
            .unwrap_or_default();
        if m.name() != "GetConfig" {
            assert!(
                c.contains("Errors:") || c.contains("closed with:"),
                "rpc {} does not list its error statuses",
                m.name()
            );
        }
    }
}
