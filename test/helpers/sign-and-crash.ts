// Child process for the crash test: records a consensus signature in a real ledger file,
// then dies by SIGKILL before it could send anything. argv: ledger file, JSON job.
import { fromHex } from "../../src/encoding/hex.ts";
import { blsSign } from "../../src/crypto/bls.ts";
import { Ledger } from "../../src/ledger/ledger.ts";
import { LedgerSignedStore } from "../../src/ledger/signed-store.ts";
import { signOnce } from "../../src/consensus/sign-once.ts";
import { signingDigest } from "../../src/protocol/consensus-messages.ts";

const [file, jobText] = process.argv.slice(2);
const job = JSON.parse(jobText!) as { mesh: string; secret: string; unsigned: Parameters<typeof signOnce>[1] };
const ledger = Ledger.open(file!);
const r = signOnce(new LedgerSignedStore(ledger, job.mesh), job.unsigned, (m) => blsSign(fromHex(job.secret, 32), signingDigest(m)));
process.stderr.write(`recorded ${r.ok}\n`);
process.kill(process.pid, "SIGKILL");
