// Forward-only migrations; PRAGMA user_version is the index of the last one applied.
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE chains (
    chain INTEGER PRIMARY KEY,
    mesh BLOB NOT NULL,
    node_id BLOB NOT NULL,
    UNIQUE (mesh, node_id)
  );
  -- rowid order is arrival order; a chain's rows arrive in seq order (only extensions are stored).
  CREATE TABLE microblocks (
    rowid INTEGER PRIMARY KEY,
    chain INTEGER NOT NULL REFERENCES chains(chain),
    seq INTEGER NOT NULL,
    id BLOB NOT NULL,
    prev BLOB NOT NULL,
    timestamp TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload_hash BLOB NOT NULL,
    key BLOB NOT NULL,
    sig BLOB NOT NULL,
    received_at INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX microblocks_chain_seq ON microblocks (chain, seq);
  CREATE UNIQUE INDEX microblocks_id ON microblocks (id);
  -- Payloads travel beside microblocks and may be withheld, so they live apart, by hash.
  -- body is the payload's exact RFC 8785 bytes: sha256(body) = payload_hash.
  -- A rowid table, not WITHOUT ROWID keyed by hash: payloads are ~1 KB, over what a
  -- WITHOUT ROWID row keeps inline on a 4 KiB page, and the overflow pages made every
  -- insert 4-6x slower and the file 3x larger.
  CREATE TABLE payloads (
    rowid INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    body BLOB NOT NULL
  );
  -- body is the certificate's exact RFC 8785 bytes, signature included.
  CREATE TABLE key_certs (
    key BLOB PRIMARY KEY,
    chain INTEGER NOT NULL REFERENCES chains(chain),
    first_seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    received_at INTEGER NOT NULL
  );
  -- Two valid microblocks with one (node, seq) and different ids: proof of a fork.
  CREATE TABLE fork_evidence (
    rowid INTEGER PRIMARY KEY,
    chain INTEGER NOT NULL REFERENCES chains(chain),
    seq INTEGER NOT NULL,
    first BLOB NOT NULL,
    second BLOB NOT NULL,
    detected_at INTEGER NOT NULL,
    UNIQUE (chain, seq, second)
  );
  `,
  // The mesh log (DESIGN.md section 6; src/log/tree-store.ts over src/ledger/tree-store.ts). Leaf idx -> microblock id;
  // the leaf hash is sha256(0x00 || id) and is not stored. log_nodes holds the root of
  // every complete (perfect) subtree of height >= 1: node (level, idx) covers leaves
  // [idx * 2^level, (idx + 1) * 2^level). Roots and proofs for any size combine
  // O(log n) of them; nothing is ever rebuilt from all leaves.
  `
  -- Leaf ids in blocks of 16 (ids = up to 16 concatenated 32-byte ids; leaf i is in block
  -- i / 16): one row per 16 leaves keeps a million-leaf append to a few seconds. No index on
  -- id (one on random keys made appends 7x slower): ids are unique by construction (a
  -- chain's seqs enter the log once), and an id's leaf is found through log_spans.
  CREATE TABLE log_leaves (
    block INTEGER PRIMARY KEY,
    ids BLOB NOT NULL
  );
  CREATE TABLE log_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
  ) WITHOUT ROWID;
  `,
  // Checkpoints of this node's mesh (src/ledger/checkpoint-store.ts, for src/log/builder.ts): the finality certificate as
  // RFC 8785 bytes, and per chain the last seq already in the log.
  `
  CREATE TABLE checkpoints (
    mesh BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    digest BLOB NOT NULL UNIQUE,
    certificate BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (mesh, epoch)
  );
  CREATE TABLE log_included (
    chain INTEGER PRIMARY KEY REFERENCES chains(chain),
    last_seq INTEGER NOT NULL
  );
  -- One row per node per checkpoint: its seqs from_seq..to_seq are leaves first_leaf.. on.
  CREATE TABLE log_spans (
    first_leaf INTEGER PRIMARY KEY,
    chain INTEGER NOT NULL REFERENCES chains(chain),
    from_seq INTEGER NOT NULL,
    to_seq INTEGER NOT NULL
  );
  CREATE INDEX log_spans_chain ON log_spans (chain, from_seq);
  `,
  // Consensus (src/ledger/signed-store.ts): every message this validator signed, under
  // each slot it occupies (a slot holds one message, ever: the guard against signing two
  // bodies for one epoch, across restarts), and verified equivocation evidence.
  `
  CREATE TABLE consensus_signed (
    mesh BLOB NOT NULL,
    slot TEXT NOT NULL,
    message BLOB NOT NULL,
    signed_at INTEGER NOT NULL,
    PRIMARY KEY (mesh, slot)
  ) WITHOUT ROWID;
  CREATE TABLE consensus_evidence (
    mesh BLOB NOT NULL,
    validator INTEGER NOT NULL,
    slot TEXT NOT NULL,
    evidence BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (mesh, validator, slot)
  ) WITHOUT ROWID;
  `,
  // Quarantine records (src/protocol/quarantine.ts, stored by src/ledger/quarantine-store.ts), each verified before it is stored, as
  // RFC 8785 bytes; digest = the record's signed domain digest.
  `
  CREATE TABLE quarantine_records (
    mesh BLOB NOT NULL,
    digest BLOB NOT NULL,
    node_id BLOB NOT NULL,
    record BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (mesh, digest)
  ) WITHOUT ROWID;
  CREATE INDEX quarantine_records_node ON quarantine_records (mesh, node_id);
  `,
  // Enrollments (src/ledger/enrollment-store.ts, DESIGN.md section 7): the AK this verifier
  // enrolled for each node by credential activation, its last attestation, and challenges
  // sent and not answered yet (their credential is a secret: the data dir is 0700).
  `
  CREATE TABLE enrollments (
    mesh BLOB NOT NULL,
    node_id BLOB NOT NULL,
    record BLOB NOT NULL,
    enrolled_at INTEGER NOT NULL,
    quoted_at INTEGER,
    pcr_digest TEXT,
    result TEXT,
    PRIMARY KEY (mesh, node_id)
  ) WITHOUT ROWID;
  CREATE TABLE enroll_pending (
    mesh BLOB NOT NULL,
    challenge BLOB NOT NULL,
    node_id BLOB NOT NULL,
    pending BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (mesh, challenge)
  ) WITHOUT ROWID;
  `,
  // Quarantine decisions (docs/PROTOCOL.md "Quarantine by quorum"): what the finalized
  // checkpoints decided, one row per decision, written with the checkpoint that takes it
  // (src/log/builder.ts) and recomputed from the certificates by dsm verify. from_seq: a
  // quarantine's first seq kept out; 0 for a lift. Version 1 quarantine records (one
  // validator's word) stay in quarantine_records but no longer count.
  `
  CREATE TABLE quarantine_decisions (
    mesh BLOB NOT NULL,
    node_id BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    action TEXT NOT NULL,
    from_seq INTEGER NOT NULL,
    decided_at INTEGER NOT NULL,
    PRIMARY KEY (mesh, node_id, epoch)
  ) WITHOUT ROWID;
  `,
  // Validator-set changes (src/protocol/set-change.ts, src/ledger/set-store.ts): requests
  // (type R) as signed, and the changes finalized checkpoints took, in epoch order; the
  // set in force is the genesis's with these applied (dsm verify recomputes them).
  `
  CREATE TABLE set_requests (
    mesh BLOB NOT NULL,
    digest BLOB NOT NULL,
    request BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (mesh, digest)
  ) WITHOUT ROWID;
  CREATE TABLE set_changes (
    mesh BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    change BLOB NOT NULL,
    decided_at INTEGER NOT NULL,
    PRIMARY KEY (mesh, epoch)
  ) WITHOUT ROWID;
  `,
  // Threat intelligence (src/ledger/intel-store.ts, docs/PROTOCOL.md "Threat intelligence"):
  // every finalized threat.advisory and threat.retract with its payload, by leaf index,
  // and epoch = the checkpoint that first included it (its range names the seq). A
  // validator fills it from its own ledger as checkpoints commit; an edge from
  // /dsm/intel/1, each one checked against a leaf of its own verified tree. next_leaf:
  // every leaf below it has been scanned for advisories.
  `
  CREATE TABLE intel_advisories (
    mesh BLOB NOT NULL,
    leaf INTEGER NOT NULL,
    id BLOB NOT NULL,
    node_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    microblock BLOB NOT NULL,
    payload BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (mesh, leaf)
  ) WITHOUT ROWID;
  CREATE INDEX intel_advisories_epoch ON intel_advisories (mesh, epoch);
  -- Only intel microblocks: finding a checkpoint's few advisories costs O(advisories), not O(leaves).
  CREATE INDEX microblocks_intel ON microblocks (chain, seq) WHERE event_type IN ('threat.advisory', 'threat.retract');
  CREATE TABLE intel_cursor (
    mesh BLOB PRIMARY KEY,
    next_leaf INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // Decisions served to bouncers (src/ledger/decision-store.ts, bouncer-store.ts,
  // src/intel/lapi.ts). decisions: the set as of the last checkpoint, by id, with the
  // change seq that added it (a bouncer that pulled at seq S had it when added_seq <= S).
  // decision_changes: the append-only journal of adds (add), removals (del) and in-place
  // updates (upd) bouncers get increments from, pruned (DecisionStore: entries no bouncer
  // cursor needs, older than 7 days, or beyond the newest 250k); pruned_seq: every entry
  // above it is still there. bouncers: dsm bouncers add, the sha256 of the key (never the
  // key), the cursor of the last stream pull (pull_seq, pull_ms) and what was last seen.
  `
  CREATE TABLE decisions (
    mesh BLOB NOT NULL,
    id INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    added_seq INTEGER NOT NULL,
    decision BLOB NOT NULL,
    PRIMARY KEY (mesh, id)
  ) WITHOUT ROWID;
  CREATE TABLE decision_changes (
    mesh BLOB NOT NULL,
    seq INTEGER NOT NULL,
    op TEXT NOT NULL,
    id INTEGER NOT NULL,
    added_seq INTEGER NOT NULL,
    decision BLOB NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (mesh, seq)
  ) WITHOUT ROWID;
  CREATE INDEX decision_changes_at ON decision_changes (mesh, at);
  CREATE TABLE decision_state (
    mesh BLOB PRIMARY KEY,
    epoch INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    pruned_seq INTEGER NOT NULL,
    stamp INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE bouncers (
    mesh BLOB NOT NULL,
    name TEXT NOT NULL,
    key_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    pull_seq INTEGER,
    pull_ms INTEGER,
    seen_ms INTEGER,
    ip TEXT,
    type TEXT,
    version TEXT,
    PRIMARY KEY (mesh, name)
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX bouncers_key ON bouncers (mesh, key_hash);
  `,
];
