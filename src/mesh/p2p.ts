// The mesh's libp2p host (DESIGN.md section 8): TCP, Noise, Yamux, identify and gossipsub,
// with the node's persistent Ed25519 key, and the fixes Bun needs (see
// ../shared/notes/libp2p-on-bun.md): Noise's ChaCha20-Poly1305 from WebAssembly, since
// Bun's node:crypto lacks it; no connection abort on a missed ping; bootstrap peers tagged
// keep-alive so they are redialled.
import { gossipsub, TopicValidatorResult } from "@libp2p/gossipsub";
import { identify } from "@libp2p/identify";
import { privateKeyFromProtobuf } from "@libp2p/crypto/keys";
import { noise } from "@libp2p/noise";
import { asCrypto, defaultCrypto } from "@libp2p/noise/crypto";
import { tcp } from "@libp2p/tcp";
import { yamux } from "@libp2p/yamux";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p, type Libp2p } from "libp2p";
import { peerIdFromString } from "@libp2p/peer-id";

export type Verdict = "accept" | "reject" | "ignore";

export interface MeshNetOptions {
  /** The libp2p.key file's bytes (libp2p protobuf Ed25519 private key). */
  privateKey: Uint8Array;
  /** Multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/7946. */
  listen: string[];
  /** Multiaddrs with /p2p/<peer id> to dial and keep dialled. */
  bootstrap: string[];
  /** Largest gossip message accepted, bytes. */
  maxMessageBytes: number;
  /** Peers allowed to stay connected (null: any). Checked once the remote peer id is known. */
  allowPeer?: (peerId: string) => boolean;
}

export class MeshNet {
  private constructor(
    readonly node: Libp2p<{ pubsub: ReturnType<ReturnType<typeof gossipsub>>; identify: unknown }>,
    private readonly maxMessageBytes: number,
  ) {}

  static async start(opts: MeshNetOptions): Promise<MeshNet> {
    const privateKey = privateKeyFromProtobuf(opts.privateKey);
    const allow = opts.allowPeer;
    const node = await createLibp2p({
      privateKey,
      addresses: { listen: opts.listen },
      transports: [tcp()],
      connectionEncrypters: [
        noise({ crypto: { ...defaultCrypto, chaCha20Poly1305Encrypt: asCrypto.chaCha20Poly1305Encrypt, chaCha20Poly1305Decrypt: asCrypto.chaCha20Poly1305Decrypt } }),
      ],
      streamMuxers: [yamux()],
      connectionMonitor: { abortConnectionOnPingFailure: false },
      connectionGater: allow
        ? {
            denyInboundEncryptedConnection: (peerId) => !allow(peerId.toString()),
            denyOutboundEncryptedConnection: (peerId) => !allow(peerId.toString()),
          }
        : {},
      services: {
        identify: identify(),
        pubsub: gossipsub({
          allowPublishToZeroTopicPeers: true,
          emitSelf: false,
          maxInboundDataLength: opts.maxMessageBytes + 4096,
        }),
      },
    });
    const net = new MeshNet(node as never, opts.maxMessageBytes);
    for (const addr of opts.bootstrap) await net.addBootstrap(addr);
    return net;
  }

  get peerId(): string {
    return this.node.peerId.toString();
  }

  addrs(): string[] {
    return this.node.getMultiaddrs().map((a) => a.toString());
  }

  peers(): string[] {
    return this.node.getPeers().map((p) => p.toString());
  }

  /** Dials a peer and keeps it dialled (redialled when the connection drops). */
  async addBootstrap(addr: string): Promise<void> {
    const ma = multiaddr(addr);
    const id = ma.getComponents().find((c) => c.name === "p2p")?.value;
    if (!id) throw new Error(`bootstrap address ${addr} has no /p2p/<peer id>`);
    const peerId = peerIdFromString(id);
    if (peerId.equals(this.node.peerId)) return;
    await this.node.peerStore.merge(peerId, { multiaddrs: [ma], tags: { "keep-alive": { value: 1 } } });
    this.node.dial(peerId).catch(() => {
      // Not up yet: the keep-alive tag makes libp2p redial it.
    });
  }

  /**
   * Subscribes to a topic. `validate` runs before a message is relayed: "reject" penalises
   * the peer that sent it (gossipsub scoring), "ignore" drops it quietly. Accepted messages
   * go to `handle`.
   */
  subscribe(topic: string, validate: (data: Uint8Array, from: string) => Verdict, handle: (data: Uint8Array, from: string) => void): void {
    const pubsub = this.node.services.pubsub;
    pubsub.topicValidators.set(topic, (peer, msg) => {
      if (msg.data.length > this.maxMessageBytes) return TopicValidatorResult.Reject;
      let v: Verdict;
      try {
        v = validate(msg.data, peer.toString());
      } catch {
        v = "reject";
      }
      return v === "accept" ? TopicValidatorResult.Accept : v === "reject" ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore;
    });
    pubsub.addEventListener("message", (evt) => {
      const msg = evt.detail;
      if (msg.topic !== topic) return;
      const from = msg.type === "signed" ? msg.from.toString() : "";
      handle(msg.data, from);
    });
    pubsub.subscribe(topic);
  }

  async publish(topic: string, data: Uint8Array): Promise<void> {
    if (data.length > this.maxMessageBytes) throw new Error(`gossip message of ${data.length} bytes is over the ${this.maxMessageBytes}-byte limit`);
    await this.node.services.pubsub.publish(topic, data);
  }

  async stop(): Promise<void> {
    await this.node.stop();
  }
}
