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
import { lpStream } from "@libp2p/utils";
import { parseJson } from "../encoding/json.ts";

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

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
  /**
   * The card handshake (/dsm/card/1): this node's card, sent to every peer that asks, and
   * the check each peer's card must pass (null when admitted, else why not). A peer whose
   * card fails is disconnected and refused from then on; one that shows none within
   * timeoutMs is disconnected only (it may have been a short-lived process of that node).
   */
  cards?: {
    own: unknown;
    admit: (card: unknown, peerId: string) => string | null;
    timeoutMs: number;
    onRefused?: (peerId: string, reason: string) => void;
    onAdmitted?: (peerId: string, card: unknown) => void;
  };
}

export const CARD_PROTOCOL = "/dsm/card/1";

/** How often a bootstrap peer that is not connected is dialled again. */
const BOOTSTRAP_REDIAL_MS = 5000;

export class MeshNet {
  /** Peers whose card was checked and admitted, and peers whose card failed (never let back in). */
  readonly admitted = new Set<string>();

  private constructor(
    readonly node: Libp2p<{ pubsub: ReturnType<ReturnType<typeof gossipsub>>; identify: unknown }>,
    private readonly maxMessageBytes: number,
    readonly refused: Map<string, string>,
  ) {}

  static async start(opts: MeshNetOptions): Promise<MeshNet> {
    const privateKey = privateKeyFromProtobuf(opts.privateKey);
    const refused = new Map<string, string>();
    const node = await createLibp2p({
      privateKey,
      addresses: { listen: opts.listen },
      transports: [tcp()],
      connectionEncrypters: [
        noise({ crypto: { ...defaultCrypto, chaCha20Poly1305Encrypt: asCrypto.chaCha20Poly1305Encrypt, chaCha20Poly1305Decrypt: asCrypto.chaCha20Poly1305Decrypt } }),
      ],
      streamMuxers: [yamux()],
      connectionMonitor: { abortConnectionOnPingFailure: false },
      // The first point where the remote peer id is known: refused peers stay out.
      connectionGater: {
        denyInboundEncryptedConnection: (peerId) => refused.has(peerId.toString()),
        denyOutboundEncryptedConnection: (peerId) => refused.has(peerId.toString()),
        denyDialPeer: (peerId) => refused.has(peerId.toString()),
      },
      services: {
        identify: identify(),
        pubsub: gossipsub({
          allowPublishToZeroTopicPeers: true,
          emitSelf: false,
          maxInboundDataLength: opts.maxMessageBytes + 4096,
        }),
      },
    });
    const net = new MeshNet(node as never, opts.maxMessageBytes, refused);
    if (opts.cards) await net.#cardHandshake(opts.cards);
    for (const addr of opts.bootstrap) await net.addBootstrap(addr);
    return net;
  }

  /**
   * Serves a JSON request/response protocol: one length-prefixed request frame in, one
   * response frame out. The handler gets the parsed request and the remote peer id.
   */
  async serve(protocol: string, handler: (request: unknown, peerId: string) => Promise<unknown> | unknown, maxBytes = 64 * 1024): Promise<void> {
    await this.node.handle(protocol, async (stream, connection) => {
      try {
        const lp = lpStream(stream, { maxDataLength: maxBytes });
        const frame = await lp.read({ signal: AbortSignal.timeout(10_000) });
        const response = await handler(parseJson(new TextDecoder().decode(frame.subarray()), "request"), connection.remotePeer.toString());
        await lp.write(new TextEncoder().encode(JSON.stringify(response)));
      } catch {
        // a malformed or slow request gets no answer
      }
      await stream.close().catch(() => {});
    });
  }

  /** One request to a peer over a protocol served by serve(); throws on timeout or a bad answer. */
  async request(peerId: string, protocol: string, request: unknown, timeoutMs: number, maxBytes = 64 * 1024): Promise<unknown> {
    const signal = AbortSignal.timeout(timeoutMs);
    const stream = await this.node.dialProtocol(peerIdFromString(peerId), protocol, { signal });
    try {
      const lp = lpStream(stream, { maxDataLength: maxBytes });
      await lp.write(new TextEncoder().encode(JSON.stringify(request)), { signal });
      const frame = await lp.read({ signal });
      return parseJson(new TextDecoder().decode(frame.subarray()), `${protocol} answer`);
    } finally {
      await stream.close().catch(() => {});
    }
  }

  /** Cards of admitted peers, by peer id. */
  readonly cards = new Map<string, unknown>();

  async #cardHandshake(cards: NonNullable<MeshNetOptions["cards"]>): Promise<void> {
    await this.serve(CARD_PROTOCOL, () => cards.own);
    this.node.addEventListener("peer:connect", (evt) => {
      const peerId = evt.detail.toString();
      if (this.admitted.has(peerId)) return;
      void this.#checkCard(peerId, cards);
    });
  }

  async #checkCard(peerId: string, cards: NonNullable<MeshNetOptions["cards"]>): Promise<void> {
    let reason: string | null;
    let card: unknown = null;
    try {
      card = await this.request(peerId, CARD_PROTOCOL, {}, cards.timeoutMs);
    } catch (e) {
      // No card is not a bad card: a one-shot command (dsm emit, ingest) that shares the
      // node's peer id may be gone before it answers, and refusing the peer id for good would
      // keep that node's own dsm run out. Hung up; it may show its card on the next connection.
      const why = e instanceof Error ? e.message : `stream ${String((e as { type?: unknown })?.type ?? "closed")}`;
      cards.onRefused?.(peerId, `no node card within ${cards.timeoutMs} ms (${why})`);
      await this.node.hangUp(peerIdFromString(peerId)).catch(() => {});
      return;
    }
    reason = cards.admit(card, peerId);
    if (reason === null) {
      this.admitted.add(peerId);
      this.cards.set(peerId, card);
      cards.onAdmitted?.(peerId, card);
      return;
    }
    this.refused.set(peerId, reason);
    cards.onRefused?.(peerId, reason);
    await this.node.hangUp(peerIdFromString(peerId)).catch(() => {});
  }

  /** Refuses an admitted peer from now on (a must-attest node whose enrollment failed), and hangs up. */
  async refuse(peerId: string, reason: string): Promise<void> {
    this.admitted.delete(peerId);
    this.cards.delete(peerId);
    this.refused.set(peerId, reason);
    await this.node.hangUp(peerIdFromString(peerId)).catch(() => {});
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

  /** Bootstrap peers, dialled again while they are not connected. */
  readonly #bootstrap = new Map<string, ReturnType<typeof peerIdFromString>>();
  #redial: ReturnType<typeof setInterval> | null = null;

  /**
   * Dials a peer and keeps it dialled: the keep-alive tag makes libp2p redial a connection
   * that drops, but not a peer it never reached (a validator still booting when its edges
   * came up after a power cut), so every few seconds each bootstrap peer not connected, and
   * not refused, is dialled again.
   */
  async addBootstrap(addr: string): Promise<void> {
    const ma = multiaddr(addr);
    const id = ma.getComponents().find((c) => c.name === "p2p")?.value;
    if (!id) throw new Error(`bootstrap address ${addr} has no /p2p/<peer id>`);
    const peerId = peerIdFromString(id);
    if (peerId.equals(this.node.peerId)) return;
    await this.node.peerStore.merge(peerId, { multiaddrs: [ma], tags: { "keep-alive": { value: 1 } } });
    this.#bootstrap.set(peerId.toString(), peerId);
    this.#redial ??= setInterval(() => this.#dialMissing(), BOOTSTRAP_REDIAL_MS);
    this.#redial.unref?.();
    this.node.dial(peerId).catch(() => {});
  }

  #dialMissing(): void {
    if (this.#stopping) return;
    const connected = new Set(this.peers());
    for (const [id, peerId] of this.#bootstrap) {
      if (connected.has(id) || this.refused.has(id)) continue;
      this.node.dial(peerId).catch(() => {});
    }
  }

  /**
   * Subscribes to a topic. `validate` runs before a message is relayed: "reject" penalises
   * the peer that sent it (gossipsub scoring), "ignore" drops it quietly. Accepted messages
   * go to `handle`.
   */
  subscribe(topic: string, validate: (data: Uint8Array, from: string) => Verdict, handle: (data: Uint8Array, from: string) => void): void {
    const pubsub = this.node.services.pubsub;
    pubsub.topicValidators.set(topic, async (peer, msg) => {
      if (msg.data.length > this.maxMessageBytes) return TopicValidatorResult.Reject;
      // Yield to the event loop before and after the (synchronous) check: the IDONTWANT that
      // gossipsub queued on receipt goes out first, and the peers' IDONTWANTs that came in
      // meanwhile are read before this message is forwarded, so a batch that every validator
      // already has directly from its edge is not sent to them all over again.
      await nextTick();
      if (this.#stopping) return TopicValidatorResult.Ignore; // the ledger may be closing: no verdict on the peer
      let v: Verdict;
      try {
        v = validate(msg.data, peer.toString());
      } catch {
        v = "reject";
      }
      await nextTick();
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

  /** Publishes; resolves to the number of peers it was sent to (0: nobody subscribed yet). */
  async publish(topic: string, data: Uint8Array): Promise<number> {
    if (data.length > this.maxMessageBytes) throw new Error(`gossip message of ${data.length} bytes is over the ${this.maxMessageBytes}-byte limit`);
    const r = await this.node.services.pubsub.publish(topic, data);
    return r.recipients.length;
  }

  #stopping = false;

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#redial) clearInterval(this.#redial);
    await this.node.stop();
  }
}
