// Every statement of the ledger's typed stores, in one place: a schema change (schema.ts)
// is checked against one file. Each store prepares its section once (prepared()).
export const STATEMENTS = {
  /** Certificates, log_included, log_spans (CheckpointStore). */
  checkpoints: {
    latest: "SELECT certificate FROM checkpoints WHERE mesh = ? ORDER BY epoch DESC LIMIT 1",
    byEpoch: "SELECT certificate FROM checkpoints WHERE mesh = ? AND epoch = ?",
    since: "SELECT certificate FROM checkpoints WHERE mesh = ? AND epoch > ? ORDER BY epoch LIMIT ?",
    // set_changes is keyed like checkpoints, one row per checkpoint that took a change.
    setChangesBefore: `SELECT c.certificate FROM set_changes s JOIN checkpoints c ON c.mesh = s.mesh AND c.epoch = s.epoch
       WHERE s.mesh = ? AND s.epoch < ? ORDER BY s.epoch`,
    insert: "INSERT INTO checkpoints (mesh, epoch, digest, certificate, created_at) VALUES (?, ?, ?, ?, ?)",
    replace: "UPDATE checkpoints SET certificate = ? WHERE mesh = ? AND epoch = ? AND digest = ?",
    included: "SELECT last_seq FROM log_included WHERE chain = ?",
    setIncluded: "INSERT INTO log_included (chain, last_seq) VALUES (?, ?) ON CONFLICT (chain) DO UPDATE SET last_seq = excluded.last_seq",
    addSpan: "INSERT INTO log_spans (first_leaf, chain, from_seq, to_seq) VALUES (?, ?, ?, ?)",
    rows: "SELECT seq, id, timestamp FROM microblocks WHERE chain = ? AND seq >= ? AND seq <= ? ORDER BY seq",
    chains: `SELECT c.chain, c.node_id, coalesce(i.last_seq, 0) AS last_seq
       FROM chains c LEFT JOIN log_included i ON i.chain = c.chain WHERE c.mesh = ?`,
    // Timestamps never decrease along a chain, so the rows before the epoch end are a prefix.
    before: "SELECT seq, id, timestamp FROM microblocks WHERE chain = ? AND seq > ? AND timestamp < ? ORDER BY seq",
    leafIndex: `SELECT s.first_leaf + (m.seq - s.from_seq) AS leaf FROM microblocks m
       JOIN chains c ON c.chain = m.chain AND c.mesh = ?
       JOIN log_spans s ON s.chain = m.chain AND s.from_seq <= m.seq AND s.to_seq >= m.seq
       WHERE m.id = ?`,
  },
  /** The mesh log's tree rows (TreeRows). */
  tree: {
    last: "SELECT block, length(ids) AS len FROM log_leaves ORDER BY block DESC LIMIT 1",
    putBlock: "INSERT INTO log_leaves (block, ids) VALUES (?, ?) ON CONFLICT (block) DO UPDATE SET ids = excluded.ids",
    putNode: "INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)",
    node: "SELECT hash FROM log_nodes WHERE level = ? AND idx = ?",
    block: "SELECT ids FROM log_leaves WHERE block = ?",
  },
  /** What this validator signed, and evidence (LedgerSignedStore). */
  signed: {
    get: "SELECT message FROM consensus_signed WHERE mesh = ? AND slot = ?",
    put: "INSERT INTO consensus_signed (mesh, slot, message, signed_at) VALUES (?, ?, ?, ?)",
    ofHeight: "SELECT DISTINCT message FROM consensus_signed WHERE mesh = ? AND (slot GLOB ? OR slot GLOB ? OR slot GLOB ? OR slot = ?)",
    hasEvidence: "SELECT 1 FROM consensus_evidence WHERE mesh = ? AND validator = ?",
    putEvidence: "INSERT INTO consensus_evidence (mesh, validator, slot, evidence, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
  },
  /** Quarantine records and fork evidence (QuarantineStore). */
  quarantine: {
    add: "INSERT INTO quarantine_records (mesh, digest, node_id, record, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    all: "SELECT record FROM quarantine_records WHERE mesh = ?",
    ofNode: "SELECT record FROM quarantine_records WHERE mesh = ? AND node_id = ?",
    has: "SELECT 1 AS x FROM quarantine_records WHERE mesh = ? AND digest = ?",
    countOf: "SELECT count(*) AS n FROM quarantine_records WHERE mesh = ? AND json_extract(CAST(record AS TEXT), '$.validator') = ?",
    fork: "SELECT min(seq) AS seq, max(detected_at) AS at FROM fork_evidence WHERE chain = ?",
    forked: "SELECT DISTINCT c.node_id FROM fork_evidence f JOIN chains c ON c.chain = f.chain WHERE c.mesh = ?",
    decide: "INSERT INTO quarantine_decisions (mesh, node_id, epoch, action, from_seq, decided_at) VALUES (?, ?, ?, ?, ?, ?)",
    decisionsOf: "SELECT epoch, action, from_seq, decided_at FROM quarantine_decisions WHERE mesh = ? AND node_id = ? ORDER BY epoch",
    decisions: "SELECT node_id, epoch, action, from_seq, decided_at FROM quarantine_decisions WHERE mesh = ? ORDER BY epoch, node_id",
  },
  /** Finalized threat advisories and retractions (IntelStore). */
  intel: {
    // The same WHERE as the partial index microblocks_intel, so the planner uses it.
    inSpan: `SELECT seq FROM microblocks WHERE chain = ? AND seq >= ? AND seq <= ? AND event_type IN ('threat.advisory', 'threat.retract') ORDER BY seq`,
    put: `INSERT INTO intel_advisories (mesh, leaf, id, node_id, seq, epoch, event_type, microblock, payload, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mesh, leaf) DO UPDATE SET payload = excluded.payload WHERE length(intel_advisories.payload) = 0`,
    from: "SELECT leaf, id, node_id, seq, epoch, event_type, microblock, payload FROM intel_advisories WHERE mesh = ? AND leaf >= ? ORDER BY leaf LIMIT ?",
    sinceEpoch: "SELECT leaf, id, node_id, seq, epoch, event_type, microblock, payload FROM intel_advisories WHERE mesh = ? AND epoch >= ? ORDER BY leaf",
    missing: "SELECT leaf FROM intel_advisories WHERE mesh = ? AND length(payload) = 0 ORDER BY leaf LIMIT ?",
    count: "SELECT count(*) AS n FROM intel_advisories WHERE mesh = ? AND length(payload) > 0",
    made: `SELECT count(*) AS n FROM microblocks WHERE chain = ? AND event_type IN ('threat.advisory', 'threat.retract')`,
    cursor: "SELECT next_leaf FROM intel_cursor WHERE mesh = ?",
    setCursor: "INSERT INTO intel_cursor (mesh, next_leaf) VALUES (?, ?) ON CONFLICT (mesh) DO UPDATE SET next_leaf = max(next_leaf, excluded.next_leaf)",
  },
  /** Validator-set change requests and finalized changes (SetChangeStore). */
  sets: {
    add: "INSERT INTO set_requests (mesh, digest, request, received_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    has: "SELECT 1 AS x FROM set_requests WHERE mesh = ? AND digest = ?",
    all: "SELECT request FROM set_requests WHERE mesh = ?",
    countOf: "SELECT count(*) AS n FROM set_requests WHERE mesh = ? AND json_extract(CAST(request AS TEXT), '$.validator') = ?",
    record: "INSERT INTO set_changes (mesh, epoch, change, decided_at) VALUES (?, ?, ?, ?)",
    changes: "SELECT epoch, change, decided_at FROM set_changes WHERE mesh = ? ORDER BY epoch",
    count: "SELECT count(*) AS n FROM set_changes WHERE mesh = ?",
  },
  enrollment: {
    put: "INSERT INTO enrollments (mesh, node_id, record, enrolled_at) VALUES (?, ?, ?, ?) ON CONFLICT (mesh, node_id) DO UPDATE SET record = excluded.record, enrolled_at = excluded.enrolled_at, quoted_at = NULL, pcr_digest = NULL, result = NULL",
    get: "SELECT record, quoted_at, pcr_digest, result FROM enrollments WHERE mesh = ? AND node_id = ?",
    has: "SELECT 1 AS x FROM enrollments WHERE mesh = ? AND node_id = ?",
    all: "SELECT record, quoted_at, pcr_digest, result FROM enrollments WHERE mesh = ?",
    quoted: "UPDATE enrollments SET quoted_at = ?, pcr_digest = ?, result = ? WHERE mesh = ? AND node_id = ?",
    drop: "DELETE FROM enrollments WHERE mesh = ? AND node_id = ?",
    addPending: "INSERT INTO enroll_pending (mesh, challenge, node_id, pending, created_at) VALUES (?, ?, ?, ?, ?)",
    getPending: "SELECT pending FROM enroll_pending WHERE mesh = ? AND challenge = ? AND created_at >= ?",
    dropPending: "DELETE FROM enroll_pending WHERE mesh = ? AND challenge = ?",
    expirePending: "DELETE FROM enroll_pending WHERE created_at < ?",
  },
  /** The decision set served to bouncers and its change journal (DecisionStore). */
  decisions: {
    state: "SELECT epoch, last_seq, pruned_seq, stamp FROM decision_state WHERE mesh = ?",
    setState: `INSERT INTO decision_state (mesh, epoch, last_seq, pruned_seq, stamp) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (mesh) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq, pruned_seq = excluded.pruned_seq, stamp = excluded.stamp`,
    all: "SELECT id, added_seq, decision FROM decisions WHERE mesh = ?",
    insert: "INSERT INTO decisions (mesh, id, until_ms, added_seq, decision) VALUES (?, ?, ?, ?, ?)",
    update: "UPDATE decisions SET decision = ? WHERE mesh = ? AND id = ?",
    remove: "DELETE FROM decisions WHERE mesh = ? AND id = ?",
    journal: "INSERT INTO decision_changes (mesh, seq, op, id, added_seq, decision, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    changes: "SELECT seq, op, id, added_seq, decision FROM decision_changes WHERE mesh = ? AND seq > ? AND seq <= ? ORDER BY seq",
    // Bouncers that pulled: the oldest cursor is how far back the journal is still needed.
    oldestCursor: "SELECT min(pull_seq) AS seq FROM bouncers WHERE mesh = ? AND pull_seq IS NOT NULL",
    // at follows seq (each replace() journals at its own nowMs): the entries older than a
    // time are a prefix, found through decision_changes_at in O(log n).
    newestBefore: "SELECT seq FROM decision_changes WHERE mesh = ? AND at < ? ORDER BY at DESC, seq DESC LIMIT 1",
    oldestFrom: "SELECT seq FROM decision_changes WHERE mesh = ? AND at >= ? ORDER BY at, seq LIMIT 1",
    prune: "DELETE FROM decision_changes WHERE mesh = ? AND seq <= ?",
    journalSize: "SELECT count(*) AS n FROM decision_changes WHERE mesh = ?",
  },
  /** Bouncer keys (hashed) and stream cursors (BouncerStore). */
  bouncers: {
    add: "INSERT INTO bouncers (mesh, name, key_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    all: "SELECT name, key_hash, created_at, pull_seq, pull_ms, seen_ms, ip, type, version FROM bouncers WHERE mesh = ? ORDER BY name",
    get: "SELECT name, key_hash, created_at, pull_seq, pull_ms, seen_ms, ip, type, version FROM bouncers WHERE mesh = ? AND name = ?",
    drop: "DELETE FROM bouncers WHERE mesh = ? AND name = ?",
    pulled: "UPDATE bouncers SET pull_seq = ?, pull_ms = ? WHERE mesh = ? AND name = ?",
    seen: "UPDATE bouncers SET seen_ms = ?, ip = ?, type = ?, version = ? WHERE mesh = ? AND name = ?",
  },
  /** dsm verify's walk over what the stores above wrote (src/ledger/verify.ts): read only, in a fixed order. */
  verify: {
    certificates: "SELECT mesh, epoch, digest, certificate FROM checkpoints ORDER BY epoch, mesh",
    leaves: "SELECT block, ids FROM log_leaves ORDER BY block",
    node: "SELECT hash FROM log_nodes WHERE level = ? AND idx = ?",
    nodeCount: "SELECT count(*) AS n FROM log_nodes",
    rangeIds: `SELECT m.seq, m.id FROM microblocks m JOIN chains c ON c.chain = m.chain
       WHERE c.mesh = ? AND c.node_id = ? AND m.seq >= ? AND m.seq <= ? ORDER BY m.seq`,
    spans: "SELECT s.first_leaf, c.mesh, c.node_id, s.from_seq, s.to_seq FROM log_spans s LEFT JOIN chains c ON c.chain = s.chain ORDER BY s.first_leaf",
    included: "SELECT c.mesh, c.node_id, i.last_seq FROM log_included i LEFT JOIN chains c ON c.chain = i.chain",
    quarantine: "SELECT mesh, digest, node_id, record FROM quarantine_records ORDER BY mesh, digest",
    decisions: "SELECT mesh, node_id, epoch, action, from_seq FROM quarantine_decisions ORDER BY mesh, epoch, node_id",
    setChanges: "SELECT mesh, epoch, change FROM set_changes ORDER BY mesh, epoch",
    setRequests: "SELECT mesh, digest, request FROM set_requests ORDER BY mesh, digest",
    signed: "SELECT mesh, slot, message FROM consensus_signed ORDER BY mesh, slot",
    evidence: "SELECT mesh, validator, slot, evidence FROM consensus_evidence ORDER BY mesh, validator, slot",
    enrollments: "SELECT mesh, node_id, record FROM enrollments ORDER BY mesh, node_id",
    rows: `SELECT (SELECT count(*) FROM checkpoints) + (SELECT count(*) FROM log_leaves) + (SELECT count(*) FROM quarantine_records) + (SELECT count(*) FROM quarantine_decisions)
       + (SELECT count(*) FROM set_changes) + (SELECT count(*) FROM set_requests)
       + (SELECT count(*) FROM consensus_signed) + (SELECT count(*) FROM consensus_evidence) + (SELECT count(*) FROM enrollments) AS n`,
  },
} as const;
