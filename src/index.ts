// dsm as a library. The CLI (bin/dsm.ts) is a thin layer over exactly this. An event goes
//   ingest → chain writer → ledger → gossip → accept → log → consensus → certificate → light client
// through src/ingest, src/chain, src/ledger, src/mesh, src/chain/accept, src/log,
// src/consensus and src/protocol (the formats, at the bottom), and src/log/verify-bundle.ts
// is all a light client needs. README.md "Layout" has the layers.
export { DSMNode, EventError, NodeError, type PreparedEvent } from "./node/node.ts";
export { SecurityEventHandler, MitigationLogger, mitigationPayload, MITIGATION_ACTIONS, type Mitigation } from "./node/handlers.ts";
export { NodeIdentity } from "./identity/node-identity.ts";
export { type IdentityKey, SoftwareIdentityKey, nodeIdOf } from "./identity/identity-key.ts";
export { Ledger, LedgerError, type StoredMicroblock, type LogFilter } from "./ledger/ledger.ts";
export { verifyLedger, type VerifyReport, type Problem } from "./ledger/verify.ts";
export {
  type Microblock,
  type MicroblockBody,
  type ValidationContext,
  MicroblockRejected,
  parseMicroblock,
  validateMicroblock,
  microblockId,
} from "./protocol/microblock.ts";
export { type KeyCert, issueKeyCert, parseKeyCert, keyNameOf } from "./protocol/keycert.ts";
export { type NodeCard, makeCard, parseCard } from "./protocol/card.ts";
export { type Genesis, MeshPolicy, meshIdOf, parseGenesis } from "./protocol/genesis.ts";
export { IngestPipeline, type IngestOptions, type IngestStats } from "./ingest/pipeline.ts";
export { toSecurityEvent, parseJsonLine, detectFormat, type SecurityEvent, type EventPayload } from "./ingest/records.ts";
export { createIpAnonymizer } from "./ingest/anonymize.ts";
export { canonicalize, canonicalBytes } from "./encoding/jcs.ts";
export { resolveConfig, parseConfig, type DsmConfig } from "./config/config.ts";
export * as bls from "./crypto/bls.ts";
export { MerkleTree } from "./log/memory-tree.ts";
export {
  EMPTY_ROOT,
  leafHash,
  nodeHash,
  rootOf,
  inclusionProof,
  consistencyProof,
  verifyInclusion,
  verifyConsistency,
  ProofError,
} from "./log/merkle.ts";
export { TreeStore } from "./log/tree-store.ts";
export { CheckpointBuilder } from "./log/builder.ts";
export { type FinalityCertificate } from "./protocol/certificate.ts";
export { type CheckpointBody, checkpointDigest, parseCheckpoint, planCheckpoint, epochAt, epochBounds } from "./protocol/checkpoint.ts";
export { buildGenesis } from "./protocol/genesis.ts";

// Consensus (DESIGN.md section 6; docs/PROTOCOL.md "Consensus").
export { ConsensusEngine, type EngineEvent, type EngineOptions } from "./consensus/engine.ts";
export { DSMValidator, ValidatorKeyError } from "./node/validator.ts";
export { ValidatorSet, validatorSetOf, quorumOf, signerIndices, signersBitfield } from "./protocol/validator-set.ts";
export {
  type Proposal,
  type Vote,
  type Signature,
  type Signed,
  type Evidence,
  type Unsigned,
  parseSigned,
  signingDigest,
  evidenceProblem,
  makeEvidence,
} from "./protocol/consensus-messages.ts";
export {
  type Clock,
  type ConsensusTransport,
  type CheckpointSource,
  type SignedStore,
  systemClock,
  MemorySignedStore,
} from "./consensus/ports.ts";
export { LedgerSignedStore } from "./ledger/signed-store.ts";
export { signOnce } from "./consensus/sign-once.ts";
export { leavesOf, type ChainView } from "./protocol/checkpoint.ts";
export { verifyBundle } from "./log/verify-bundle.ts";
export { verifyFinality } from "./protocol/certificate.ts";
