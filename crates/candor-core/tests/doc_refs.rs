//! Every `§N` / `§N.M` the proto cites names a numbered heading of
//! docs/protocol.md (issue #18: citations must resolve).

#[test]
fn proto_section_references_resolve() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let doc = std::fs::read_to_string(format!("{root}/docs/protocol.md")).unwrap();
    let proto = std::fs::read_to_string(format!("{root}/proto/candor/v1/candor.proto")).unwrap();
    let headings: Vec<String> = doc
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .map(|n| n.trim_end_matches('.').to_string())
        .collect();
    let mut cited = 0;
    for (i, _) in proto.match_indices('§') {
        let rest = &proto[i + '§'.len_utf8()..];
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let num = num.trim_end_matches('.');
        assert!(
            !num.is_empty(),
            "a citation without a section number: {:?}",
            &rest[..rest.len().min(40)]
        );
        assert!(
            headings.iter().any(|h| h == num),
            "proto cites §{num}, which is not a heading of docs/protocol.md"
        );
        cited += 1;
    }
    assert!(cited > 20, "{cited} citations");
}
