// What the mesh blocks (DESIGN.md section 12, docs/PROTOCOL.md "Decisions"): the types a
// decision has wherever it goes (the ledger, the CrowdSec bouncer API, exports, dsm
// decisions list --json). Decisions are computed by src/intel/decide.ts; this file is their format.
import type { AdvisorySeverity, Category, Scope } from "./advisory.ts";

export interface Decision {
  /** A safe integer derived from (scope, value, until): the same on every node; a new until is a new decision. */
  id: number;
  scope: Scope;
  /** Canonical indicator text (src/protocol/advisory.ts normalizeIndicator). */
  value: string;
  category: Category;
  severity: AdvisorySeverity;
  /** RFC 3339 ms: from when the decision holds (the end of the epoch whose checkpoint made it). */
  since: string;
  /** RFC 3339 ms: when it expires, absolute, so every node holds the same bytes. */
  until: string;
  /** Epoch of the checkpoint that made this decision. */
  epoch: number;
  /** Node ids of the reporters whose advice counts, sorted. */
  reporters: string[];
  /** Microblock ids of the advisories that count, in log order. */
  advisories: string[];
}
