// NodeIdentity: a node's identity key with the names derived from it. Code written against
// the first prototype's API uses this name; dsm itself reads the same through DSMNode.
import { toHex } from "../encoding/hex.ts";
import { type IdentityKey, nodeIdOf, SoftwareIdentityKey } from "./identity-key.ts";

export class NodeIdentity {
  readonly nodeId: string;
  readonly publicKeyHex: string;

  constructor(readonly key: IdentityKey) {
    this.nodeId = nodeIdOf(key.publicKey);
    this.publicKeyHex = toHex(key.publicKey);
  }

  /** "software" keys live in a 0600 file; "tpm" keys never leave the TPM. */
  get kind(): IdentityKey["kind"] {
    return this.key.kind;
  }

  sign(digest: Uint8Array): Promise<Uint8Array> {
    return this.key.sign(digest);
  }

  static loadSoftware(file: string): NodeIdentity {
    return new NodeIdentity(SoftwareIdentityKey.load(file));
  }
}
