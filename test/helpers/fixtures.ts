// One realistic Suricata EVE alert, written for these tests, shared by every file that needs one.
export const SURICATA_ALERT = {
  timestamp: "2026-06-26T11:00:03.342282-0400",
  flow_id: 991192778198299,
  in_iface: "eth0",
  event_type: "alert",
  src_ip: "10.137.3.54",
  src_port: 64389,
  dest_ip: "10.128.2.48",
  dest_port: 8443,
  proto: "TCP",
  alert: { action: "allowed", gid: 1, signature_id: 2610003, rev: 1, signature: "SURICATA TLS on unusual port", category: "", severity: 3 },
};
