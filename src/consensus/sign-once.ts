// The one way a validator signs a consensus message: sign, then claim the message's slots
// in the durable store, and only what the store holds may be sent. A slot already holding
// the same value gives the stored message back (a restart re-sends it); a different value
// means this validator already signed something else there, and it refuses.
import { toHex } from "../encoding/hex.ts";
import { type Signed, slotsOf, type Unsigned } from "../protocol/consensus-messages.ts";
import type { SignedStore } from "./ports.ts";

export type SignOnce = { ok: true; message: Signed } | { ok: false; held: Signed; slot: string };

export function signOnce(store: SignedStore, unsigned: Unsigned, sign: (message: Unsigned) => Uint8Array): SignOnce {
  const msg = { ...unsigned, sig: toHex(sign(unsigned)) } as Signed;
  const wanted = slotsOf(msg);
  const held = store.claim(
    wanted.map((s) => s.slot),
    msg,
  );
  if (held === msg) return { ok: true, message: msg };
  const heldSlots = new Map(slotsOf(held).map((s) => [s.slot, s.value]));
  const clash = wanted.find((s) => heldSlots.has(s.slot) && heldSlots.get(s.slot) !== s.value);
  if (held.type === msg.type && clash === undefined && wanted.every((s) => heldSlots.has(s.slot))) return { ok: true, message: held };
  return { ok: false, held, slot: (clash ?? wanted[0]!).slot };
}
