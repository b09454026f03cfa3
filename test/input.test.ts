// What decide() is given from a ledger: here, the validators' card addresses it never blocks.
import { expect, test } from "bun:test";
import { hostOfMultiaddr } from "../src/intel/input.ts";

test("a validator card's address is a never_block range of the decision rule; names and unspecified addresses are not", () => {
  expect(hostOfMultiaddr("/ip4/203.0.113.5/tcp/7946/p2p/12D3KooWxyz")).toEqual(["203.0.113.5/32"]);
  expect(hostOfMultiaddr("/ip6/2001:DB8::5/tcp/7946")).toEqual(["2001:db8::5/128"]);
  expect(hostOfMultiaddr("/ip4/0.0.0.0/tcp/7946")).toEqual([]);
  expect(hostOfMultiaddr("/dns4/v1.example/tcp/7946")).toEqual([]);
  expect(hostOfMultiaddr("/ip4/999.1.1.1/tcp/1")).toEqual([]);
});
