// Text files embedded in the binary with `import x from "..." with { type: "text" }`.
declare module "*.ndjson" {
  const text: string;
  export default text;
}
