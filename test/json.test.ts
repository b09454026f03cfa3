// parseJson (src/encoding/json.ts): I-JSON's rule that no object names a member twice.
import { describe, expect, test } from "bun:test";
import { duplicateMember, JsonError, parseJson } from "../src/encoding/json.ts";

describe("parseJson refuses duplicate member names", () => {
  test("a duplicate at any depth, in any spelling, is refused with its name", () => {
    for (const [text, name] of [
      ['{"a":1,"a":2}', "a"],
      ['{"a":1,"b":{"c":1,"c":2}}', "c"],
      ['[{"x":1},{"y":{"z":[{"k":1,"k":2}]}}]', "k"],
      ['{"a":1,"\\u0061":2}', "a"],
      ['{ "sig" : "00" ,\n "sig":"11"}', "sig"],
      ['{"\\"q":1,"\\"q":2}', '"q'],
    ] as const) {
      expect(duplicateMember(text)).toBe(name);
      expect(() => parseJson(text, "bundle")).toThrow(JsonError);
      expect(() => parseJson(text, "bundle")).toThrow(`bundle: member name ${JSON.stringify(name)} appears twice`);
    }
  });

  test("the same name in sibling or nested objects, names inside strings, and values that look like names are fine", () => {
    for (const text of [
      '{"a":{"a":1},"b":{"a":2}}',
      '[{"a":1},{"a":2}]',
      '{"a":"\\"a\\":1","b":["a","a"]}',
      '{"a":"x:y","b":"a"}',
      '{"a\\\\":1,"a":2}',
      '"{\\"a\\":1,\\"a\\":2}"',
      "[1,2,3]",
      "{}",
    ]) {
      expect(duplicateMember(text)).toBeNull();
      expect(parseJson(text)).toEqual(JSON.parse(text));
    }
  });

  test("malformed JSON is a JsonError naming what was read", () => {
    expect(() => parseJson('{"a":', "card")).toThrow(/^card: /);
    expect(() => parseJson("", "card")).toThrow(JsonError);
  });
});
