// EVE and Zeek lines for the intel.rules tests, written for them: an attacker on the
// internet (203.0.113.66, TEST-NET-3) beaconing to a victim inside the site (10.20.30.40),
// a scanner (198.51.100.23) probing several local hosts, and Zeek notices and intel hits.
export const ATTACKER = "203.0.113.66";
export const VICTIM = "10.20.30.40";
export const SCANNER = "198.51.100.23";

const alert = (o: { ts: string; src: string; sport: number; dst: string; dport: number; sid: number; sig: string; category: string; severity: number; source?: boolean }) => ({
  timestamp: o.ts,
  flow_id: 1_000_000 + o.sid + o.sport,
  in_iface: "eth0",
  event_type: "alert",
  src_ip: o.src,
  src_port: o.sport,
  dest_ip: o.dst,
  dest_port: o.dport,
  proto: "TCP",
  alert: {
    action: "allowed",
    gid: 1,
    signature_id: o.sid,
    rev: 3,
    signature: o.sig,
    category: o.category,
    severity: o.severity,
    // Suricata 7 names the attacker of signatures with a target keyword.
    ...(o.source ? { source: { ip: ATTACKER, port: 443 }, target: { ip: VICTIM, port: o.src === VICTIM ? o.sport : o.dport } } : {}),
  },
});

/** Two severity-1 C2 alerts (the second is the victim's reply: src_ip is the victim, alert.source.ip the attacker) and one severity-2 scan alert. */
export const C2_ALERTS = [
  alert({ ts: "2026-06-26T11:00:03.342282-0400", src: ATTACKER, sport: 443, dst: VICTIM, dport: 51234, sid: 2024897, sig: "ET MALWARE Cobalt Strike Beacon Observed", category: "A Network Trojan was detected", severity: 1, source: true }),
  alert({ ts: "2026-06-26T11:00:04.100000-0400", src: VICTIM, sport: 51234, dst: ATTACKER, dport: 443, sid: 2024898, sig: "ET MALWARE Cobalt Strike Beacon Reply", category: "A Network Trojan was detected", severity: 1, source: true }),
  alert({ ts: "2026-06-26T11:00:05.000000-0400", src: SCANNER, sport: 40000, dst: "10.20.30.41", dport: 22, sid: 2001219, sig: "ET SCAN Potential SSH Scan", category: "Attempted Information Leak", severity: 2 }),
];

/** `n` scan alerts from the scanner, one second apart from `startIso` (UTC), to different local hosts. */
export function scanAlerts(n: number, startMs = Date.UTC(2026, 5, 26, 15, 0, 0)): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) =>
    alert({ ts: new Date(startMs + i * 1000).toISOString().replace("Z", "+0000"), src: SCANNER, sport: 40000 + i, dst: `10.20.30.${50 + i}`, dport: 22, sid: 2001219, sig: "ET SCAN Potential SSH Scan", category: "Attempted Information Leak", severity: 2 }),
  );
}

export const ZEEK_NOTICE = {
  ts: 1782486000.5,
  uid: "CHhAvVGS1DHFjwGM9",
  "id.orig_h": SCANNER,
  "id.orig_p": 40001,
  "id.resp_h": VICTIM,
  "id.resp_p": 22,
  proto: "tcp",
  note: "SSH::Password_Guessing",
  msg: `${SCANNER} appears to be guessing SSH passwords (seen in 30 connections).`,
  src: SCANNER,
  actions: ["Notice::ACTION_LOG"],
};

export const ZEEK_INTEL = {
  ts: 1782486001.25,
  uid: "C4J4Th3PJpwUYZZ6gc",
  "id.orig_h": VICTIM,
  "id.orig_p": 49152,
  "id.resp_h": ATTACKER,
  "id.resp_p": 80,
  "seen.indicator": "evil.example",
  "seen.indicator_type": "Intel::DOMAIN",
  "seen.where": "HTTP::IN_HOST_HEADER",
  matched: ["Intel::DOMAIN"],
  sources: ["abuse.ch"],
};

export const ndjsonLines = (records: readonly object[]): string => records.map((r) => JSON.stringify(r)).join("\n") + "\n";
