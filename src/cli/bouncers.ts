import { BouncerError, BouncerStore, type Bouncer } from "../ledger/bouncer-store.ts";
import type { DSMNode } from "../node/node.ts";
import { CliError, command, commonArgs, type Context, context, print, printJson, warning, withNode } from "./common.ts";

export default command({
  meta: { name: "bouncers", description: "Add, list and delete the CrowdSec bouncers allowed to pull this node's decisions" },
  help: `dsm run serves the mesh's decisions (what the finalized checkpoints say to block) on
decisions.listen through the bouncer side of the CrowdSec Local API, so the bouncers an
operator already runs (crowdsec-firewall-bouncer, crowdsec-custom-bouncer, the nginx
and HAProxy ones) enforce them. Each bouncer authenticates with its own key in the
X-Api-Key header, as with cscli bouncers; a request without a known key gets 403. Only
Ip and Range decisions are served. These commands work on the node's ledger whether or
not dsm run is running, and take effect at once.

  dsm bouncers add NAME
      Make a bouncer and print its key on stdout, once: only a hash of it is stored, so
      it cannot be shown again (delete the bouncer and add it again for a new one). Put
      it in the bouncer's configuration as api_key, with api_url http://ADDRESS:PORT/
      (decisions.listen). NAME: 1 to 64 of A-Z a-z 0-9 . _ -. With --json: {"name","key"}.
  dsm bouncers list [--json]
      Every bouncer: when it was added, its last pull of the decision stream, the address
      and User-Agent (type/version) it last came from.
  dsm bouncers delete NAME
      Remove a bouncer; its key stops working with the next request.

A bouncer's stream cursor (what it was last sent) is kept in the ledger, so after a
restart of dsm run it is sent only what changed, deletions included.

EXIT STATUS  0 done, 1 error (bad or taken name, no such bouncer).

EXAMPLES
  dsm bouncers add edge-fw
  KEY=$(dsm bouncers add nginx-1 -q)
  dsm bouncers list --json | jq -r '.bouncers[] | select(.last_pull == null) | .name'
  dsm bouncers delete edge-fw`,
  args: {
    ...commonArgs,
    action: { type: "positional", required: false, description: "list (default), add or delete", valueHint: "ACTION" },
    name: { type: "positional", required: false, description: "add/delete: the bouncer's name", valueHint: "NAME" },
  },
  async run({ args }) {
    const ctx = context(args);
    const action = args.action === undefined ? "list" : String(args.action);
    const name = args.name === undefined ? undefined : String(args.name);
    if (action === "list") {
      if (name !== undefined) throw new CliError("dsm bouncers list takes no other arguments");
      return withNode(ctx, (node) => list(ctx, node), { readonly: true });
    }
    if (action !== "add" && action !== "delete") throw new CliError(`unknown action "${action}": use list, add or delete`);
    if (name === undefined) throw new CliError(`dsm bouncers ${action} needs the bouncer's NAME`);
    return withNode(ctx, (node) => (action === "add" ? add(ctx, node, name) : remove(ctx, node, name)));
  },
});

function add(ctx: Context, node: DSMNode, name: string): void {
  let made: { name: string; key: string };
  try {
    made = new BouncerStore(node.ledger, node.mesh).add(name);
  } catch (e) {
    if (e instanceof BouncerError) throw new CliError(e.message);
    throw e;
  }
  // The key alone on stdout, so KEY=$(dsm bouncers add NAME) holds just the key.
  if (ctx.json) printJson(made);
  else print(made.key);
  warning(`API key for bouncer ${name} printed above; it is stored hashed and cannot be shown again: put it in the bouncer's configuration now (api_key), with api_url http://ADDRESS:PORT/ of decisions.listen`);
}

function remove(ctx: Context, node: DSMNode, name: string): void {
  if (!new BouncerStore(node.ledger, node.mesh).delete(name)) throw new CliError(`no bouncer named ${name} (see: dsm bouncers list)`);
  if (ctx.json) printJson({ deleted: name });
  else warning(`bouncer ${name} deleted: its key no longer works`);
}

const time = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

function list(ctx: Context, node: DSMNode): void {
  const bouncers = new BouncerStore(node.ledger, node.mesh).list();
  const rows = bouncers.map((b: Bouncer) => ({
    name: b.name,
    created: time(b.created_ms),
    last_pull: time(b.cursor?.ms ?? null),
    last_seen: time(b.seen_ms),
    ip: b.ip,
    type: b.type,
    version: b.version,
  }));
  if (ctx.json) {
    printJson({ bouncers: rows });
    return;
  }
  if (rows.length === 0) {
    print("no bouncers (add one with: dsm bouncers add NAME)");
    return;
  }
  const table = [["NAME", "CREATED", "LAST PULL", "IP", "TYPE", "VERSION"], ...rows.map((r) => [r.name, r.created!, r.last_pull ?? "never", r.ip ?? "-", r.type || "-", r.version ?? "-"])];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  print(table.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n"));
}
