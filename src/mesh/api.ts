// What the control socket, the metrics port and the client see of a running daemon: its
// status and the few things they ask of it. Declared apart from the Daemon class so that
// control.ts depends on this, and daemon.ts on control.ts, with no circle.
import type { CheckpointBuilder } from "../log/builder.ts";
import type { DSMNode } from "../node/node.ts";
import type { FinalityCertificate } from "../protocol/certificate.ts";

export interface DaemonStatus {
  node_id: string;
  mesh: string;
  peer_id: string;
  addrs: string[];
  peers: number;
  role: "edge" | "validator";
  published: number;
  received: number;
  rejected: Record<string, number>;
  gossip_bytes_out: number;
  gossip_bytes_in: number;
  last_finalized_epoch: number | null;
  /** From the end of the last finalized epoch to its certificate here. */
  finality_latency_ms: number | null;
  /** Signers of the last certificate / genesis validators. */
  participation: number | null;
  /** Closed epochs since the last finalized one. */
  lag_epochs: number | null;
  validators: { index: number; node_id: string; peer_id: string; connected: boolean; signed_last: boolean }[];
  consensus: { round: number; step: string; base_epoch: number; flagged: number[] } | null;
  /** Threat intelligence (docs/PROTOCOL.md "Threat intelligence"). */
  intel: {
    /** Advisories and retractions this node signed. */
    made: number;
    /** Finalized ones of other nodes this edge fetched and checked (a validator has them in its ledger). */
    received: number;
    /** Finalized ones held, of every node. */
    finalized: number;
    /** Refused from peers: not a leaf of this node's tree, a payload that does not match. */
    refused: number;
    /** Leaves scanned for advisories, of the finalized tree's. */
    scanned_to: number;
    tree_size: number;
    decisions: number;
    /** Epoch of the checkpoint the decision set is as of. */
    decisions_as_of: number | null;
    /** Active decisions by "scope/category". */
    active: Record<string, number>;
    bouncer_pulls: number;
    /** From the newest advisory's microblock time to the decision held here, for the last decision made. */
    decision_latency_ms: number | null;
  };
  attestation: {
    challenging: boolean;
    passed: number;
    failed: number;
    /** Failures by the check that failed. */
    failures: Record<string, number>;
    /** Admitted peers and their trust level (DESIGN.md section 7). */
    nodes: {
      node_id: string;
      peer_id: string;
      trust: "software" | "tpm-evidence" | "tpm-enrolled";
      detail: string;
      ek: string | null;
      /** Last attestation here: when (ms), its PCR digest, and "passed" or "failed: <check>". */
      quoted_at: number | null;
      pcr_digest: string | null;
      result: string | null;
    }[];
  };
}

export interface DaemonApi {
  readonly node: DSMNode;
  readonly builder: CheckpointBuilder;
  status(): DaemonStatus;
  peers(): string[];
  /** The certificate of `epoch` (default: the last closed one) or a later one, waiting up to ms. */
  waitForCertificate(epoch: number | undefined, ms: number): Promise<FinalityCertificate | null>;
}
