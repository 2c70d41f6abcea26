use super::*;

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

fn append(w: &mut WalWriter, tenant_id: &TenantId, payloads: &[&[u8]]) -> u64 {
    // Each payload is a request of its own.
    let entries: Vec<Entry<'_>> = payloads
        .iter()
        .map(|p| Entry {
            tenant: tenant_id,
            table: Table::Events,
            durability: Durability::Sync,
            ends_request: true,
            payload: p,
        })
        .collect();
    w.append(&entries).unwrap().first_lsn
}

fn read_all(dir: &Path) -> (Vec<(u64, String, Vec<u8>)>, ReplayReport) {
    let mut records = Vec::new();
    let report = replay(dir, |r| {
        records.push((r.lsn, r.tenant.to_string(), r.payload))
    })
    .unwrap();
    (records, report)
}

#[test]
fn round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let acme = tenant("acme");
    let mut w = WalWriter::new(dir.path(), 0, 64).unwrap();
    assert_eq!(append(&mut w, &acme, &[b"one", b"two"]), 0);
    assert_eq!(append(&mut w, &tenant("globex"), &[b"three"]), 2);
    assert_eq!(append(&mut w, &acme, &[b"four"]), 3);
    let (records, report) = read_all(dir.path());
    assert_eq!(
        records,
        vec![
            (0, "acme".into(), b"one".to_vec()),
            (1, "acme".into(), b"two".to_vec()),
            (2, "globex".into(), b"three".to_vec()),
            (3, "acme".into(), b"four".to_vec()),
        ]
    );
    assert!(report.segments >= 2, "64-byte segments roll: {report:?}");
    assert_eq!(report.next_lsn, 4);
    assert_eq!(report.torn_tails, 0);
}

#[test]
fn torn_tail_is_truncated_and_counted() {
    // A cut anywhere inside the last frame loses exactly that frame.
    for back in [1, 5, 8 + 9, 8 + 9 + 3] {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::new(dir.path(), 10, 1 << 20).unwrap();
        append(&mut w, &tenant("acme"), &[b"kept", b"cut short"]);
        drop(w);
        let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - back).unwrap();
        let (records, report) = read_all(dir.path());
        assert_eq!(records.len(), 1, "cut {back} bytes");
        assert_eq!(records[0].2, b"kept");
        assert_eq!(report.torn_tails, 1);
        assert_eq!(report.next_lsn, 11);
        let (records, report) = read_all(dir.path());
        assert_eq!(
            (records.len(), report.torn_tails),
            (1, 0),
            "truncated once, clean after"
        );
    }
}

#[test]
fn bit_flip_in_the_middle_is_reported_and_preserved() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = WalWriter::new(dir.path(), 0, 1 << 20).unwrap();
    append(&mut w, &tenant("acme"), &[b"first", b"second", b"third"]);
    append(&mut w, &tenant("acme"), &[b"next segment"]);
    drop(w);
    // New writers never append to an old segment, so both appends share one segment here;
    // flip a bit in the second record.
    let (_, path) = list_segments(dir.path())
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let mut data = std::fs::read(&path).unwrap();
    let second_payload = data.windows(6).position(|w| w == b"second").unwrap();
    data[second_payload] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    let (records, report) = read_all(dir.path());
    let payloads: Vec<_> = records.iter().map(|r| r.2.clone()).collect();
    assert_eq!(payloads, vec![b"first".to_vec()]);
    assert_eq!(report.corrupt_segments.len(), 1);
    assert_eq!(
        std::fs::read(&report.corrupt_segments[0]).unwrap(),
        data,
        "the evidence is kept"
    );
    // The daemon can go on: the segment now ends before the bad record.
    let (records, report) = read_all(dir.path());
    assert_eq!((records.len(), report.corrupt_segments.len()), (1, 0));
}

#[test]
fn committed_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let acme = tenant("acme");
    let mut w = WalWriter::new(dir.path(), 0, 1).unwrap();
    for _ in 0..4 {
        append(&mut w, &acme, &[b"x"]);
    }
    assert_eq!(list_segments(dir.path()).unwrap().len(), 4);
    assert_eq!(w.delete_before(2).unwrap(), 2);
    let left: Vec<u64> = list_segments(dir.path())
        .unwrap()
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(left, [2, 3]);
    assert_eq!(w.delete_before(4).unwrap(), 2);
    assert!(list_segments(dir.path()).unwrap().is_empty());
    // LSNs go on from where they were.
    assert_eq!(append(&mut w, &acme, &[b"y"]), 4);
}

#[test]
fn frames_carry_tenant_table_and_durability() {
    let mut buf = Vec::new();
    let acme = tenant("acme");
    encode(
        &mut buf,
        7,
        &Entry {
            tenant: &acme,
            table: Table::Spans,
            durability: Durability::Sync,
            ends_request: true,
            payload: b"p",
        },
    )
    .unwrap();
    let (record, ends_request) = decode_body(
        &buf[FRAME_HEADER..],
        Location {
            segment: 0,
            offset: 0,
            len: buf.len() as u32,
        },
    )
    .unwrap();
    assert!(ends_request);
    assert_eq!(
        (
            record.lsn,
            record.tenant.as_str(),
            record.table,
            record.durability
        ),
        (7, "acme", Table::Spans, Durability::Sync)
    );
    assert_eq!(record.payload, b"p");
}

#[test]
fn a_request_cut_short_is_dropped_whole() {
    // Two requests in one group: [r1a, r1b (end)] [r2a, r2b (end)]; a write cut anywhere inside
    // the second request keeps the first request whole and nothing of the second.
    let acme = tenant("acme");
    let entry = |payload: &'static [u8], ends_request| Entry {
        tenant: &acme,
        table: Table::Logs,
        durability: Durability::Sync,
        ends_request,
        payload,
    };
    let mut frames = Vec::new();
    let group = [
        entry(b"r1a", false),
        entry(b"r1b", true),
        entry(b"r2a", false),
        entry(b"r2b", true),
    ];
    let mut ends = Vec::new();
    for (i, e) in group.iter().enumerate() {
        encode(&mut frames, i as u64, e).unwrap();
        ends.push(frames.len());
    }
    for cut in [ends[2], ends[2] + 3, ends[3] - 1] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 0), &frames[..cut]).unwrap();
        let (records, report) = read_all(dir.path());
        let payloads: Vec<Vec<u8>> = records.into_iter().map(|r| r.2).collect();
        assert_eq!(payloads, [b"r1a".to_vec(), b"r1b".to_vec()], "cut at {cut}");
        assert_eq!(report.incomplete_request_records, 1, "cut at {cut}");
        assert_eq!(report.torn_tails, 1);
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), 0))
                .unwrap()
                .len(),
            ends[1] as u64
        );
    }
}

#[test]
fn records_are_read_again_where_the_writer_and_replay_say_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let acme = tenant("acme");
    // Small segments: the records spread over several files.
    let mut w = WalWriter::new(dir.path(), 7, 40).unwrap();
    let entry = |payload: &'static [u8]| Entry {
        tenant: &acme,
        table: Table::Logs,
        durability: Durability::Sync,
        ends_request: true,
        payload,
    };
    let a = w.append(&[entry(b"first"), entry(b"second")]).unwrap();
    let b = w.append(&[entry(b"third")]).unwrap();
    assert_eq!((a.first_lsn, b.first_lsn), (7, 9));
    assert_ne!(a.locations[0].segment, b.locations[0].segment);
    let mut reader = WalReader::new(dir.path());
    let read = |reader: &mut WalReader, lsn, location| reader.read(lsn, location).unwrap().payload;
    assert_eq!(read(&mut reader, 7, a.locations[0]), b"first");
    assert_eq!(read(&mut reader, 8, a.locations[1]), b"second");
    assert_eq!(read(&mut reader, 9, b.locations[0]), b"third");
    // Replay reports the same places.
    let mut replayed = Vec::new();
    replay(dir.path(), |r| replayed.push((r.lsn, r.location))).unwrap();
    assert_eq!(
        replayed,
        vec![
            (7, a.locations[0]),
            (8, a.locations[1]),
            (9, b.locations[0])
        ]
    );
    // The wrong LSN or a damaged byte is refused, never returned.
    assert!(matches!(
        reader.read(8, a.locations[0]),
        Err(WalError::Damaged {
            reason: "another LSN at this place",
            ..
        })
    ));
    let path = segment_path(dir.path(), a.locations[0].segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = a.locations[1].offset as usize + a.locations[1].len as usize - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        WalReader::new(dir.path()).read(8, a.locations[1]),
        Err(WalError::Damaged {
            reason: "checksum mismatch",
            ..
        })
    ));
}

/// A segment of `records` (one request each), its path and length, with `zeros` zero bytes
/// after its data: what a crash can leave where the file's size reached the disk and the last
/// write's data did not.
fn segment_with_zeros(dir: &Path, records: &[&[u8]], zeros: usize) -> (PathBuf, u64) {
    let mut w = WalWriter::new(dir, 0, 1 << 20).unwrap();
    append(&mut w, &tenant("acme"), records);
    drop(w);
    let (_, path) = list_segments(dir).unwrap().pop().unwrap();
    let mut data = std::fs::read(&path).unwrap();
    let len = data.len() as u64;
    data.resize(data.len() + zeros, 0);
    std::fs::write(&path, &data).unwrap();
    (path, len)
}

#[test]
fn zeros_after_the_last_record_end_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    segment_with_zeros(dir.path(), &[b"one", b"two"], 3 * 4096);
    let (records, report) = read_all(dir.path());
    let payloads: Vec<_> = records.iter().map(|r| r.2.clone()).collect();
    assert_eq!(payloads, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!((report.torn_tails, report.corrupt_segments.len()), (0, 0));
    assert_eq!(report.next_lsn, 2);
}

#[test]
fn a_write_cut_short_before_zeros_is_a_torn_tail() {
    let acme = tenant("acme");
    let entry = Entry {
        tenant: &acme,
        table: Table::Events,
        durability: Durability::Sync,
        ends_request: true,
        payload: b"never acknowledged",
    };
    let mut frame = Vec::new();
    encode(&mut frame, 1, &entry).unwrap();
    for cut in [3, FRAME_HEADER, frame.len() - 1] {
        let dir = tempfile::tempdir().unwrap();
        let (path, len) = segment_with_zeros(dir.path(), &[b"kept"], 4096);
        let mut data = std::fs::read(&path).unwrap();
        data[len as usize..len as usize + cut].copy_from_slice(&frame[..cut]);
        std::fs::write(&path, &data).unwrap();
        let (records, report) = read_all(dir.path());
        assert_eq!(records.len(), 1, "cut at {cut}");
        assert_eq!(records[0].2, b"kept");
        assert_eq!(report.torn_tails, 1, "cut at {cut}");
        assert!(report.corrupt_segments.is_empty(), "cut at {cut}");
        // Truncated where the torn frame began, zeros and all.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "cut at {cut}");
    }
}

#[test]
fn damage_before_more_records_is_corruption_even_with_zeros_after() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = segment_with_zeros(dir.path(), &[b"first", b"second", b"third"], 4096);
    let mut data = std::fs::read(&path).unwrap();
    let at = data.windows(6).position(|w| w == b"second").unwrap();
    data[at] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    let (records, report) = read_all(dir.path());
    assert_eq!(records.len(), 1);
    assert_eq!(report.corrupt_segments.len(), 1);
    assert_eq!(report.torn_tails, 0);
}

/// Found by the `wal_replay` fuzz target: a frame whose CRC matches but whose LSN is u64::MAX
/// overflowed the replay's next LSN. It is damage: the records before it replay, it does not.
#[test]
fn a_record_with_the_last_lsn_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let acme = tenant("acme");
    let entry = |payload: &'static [u8]| Entry {
        tenant: &acme,
        table: Table::Events,
        durability: Durability::Sync,
        ends_request: true,
        payload,
    };
    let mut frames = Vec::new();
    encode(&mut frames, 7, &entry(b"kept")).unwrap();
    encode(&mut frames, u64::MAX, &entry(b"last")).unwrap();
    std::fs::write(segment_path(dir.path(), 7), &frames).unwrap();
    let (records, report) = read_all(dir.path());
    assert_eq!(records, vec![(7, "acme".into(), b"kept".to_vec())]);
    assert_eq!((report.next_lsn, report.torn_tails), (8, 1));
}
