// Checks the built dashboard in dist/: budgets and "nothing leaves the node".
// - total JS + CSS gzipped (level 9) <= 100 KB;
// - no source maps; every file index.html references exists;
// - no URL to another origin in index.html, and none loaded by the JS/CSS (no CDN, no web fonts);
// - none of the words the UI must not use (no ML UI).
import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";

const dist = new URL("../dist/", import.meta.url).pathname;
const BUDGET = 100 * 1024;
const problems = [];

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

if (!existsSync(join(dist, "index.html"))) {
  console.error("dist/index.html is missing: run npm run build first");
  process.exit(1);
}
const files = walk(dist).sort();
let total = 0;
for (const file of files) {
  const rel = relative(dist, file);
  const bytes = readFileSync(file);
  if (rel.endsWith(".map")) problems.push(`${rel}: source maps are not shipped`);
  if (/\.(js|css)$/.test(rel)) {
    const gz = gzipSync(bytes, { level: 9 }).length;
    total += gz;
    console.log(`${rel.padEnd(40)} ${String(bytes.length).padStart(8)} B  ${String(gz).padStart(7)} B gzip`);
    const text = bytes.toString("utf8");
    // url(...) or @import to another origin in CSS; fetch/import of an absolute URL in JS.
    for (const m of text.matchAll(/(?:url\(\s*["']?|@import\s+["']|import\(\s*["']|fetch\(\s*["'])(https?:)?\/\/[^"')\s]+/g)) {
      problems.push(`${rel}: loads from another origin: ${m[0]}`);
    }
  }
}
const html = readFileSync(join(dist, "index.html"), "utf8");
for (const m of html.matchAll(/\b(?:src|href)="([^"]+)"/g)) {
  const ref = m[1];
  if (/^(?:[a-z]+:)?\/\//i.test(ref)) problems.push(`index.html: external reference ${ref}`);
  else if (!ref.startsWith("data:") && !ref.startsWith("#") && !existsSync(join(dist, ref.replace(/^\.?\//, "")))) {
    problems.push(`index.html: ${ref} is not in dist/`);
  }
}
const sources = walk(new URL("../src/", import.meta.url).pathname).map((f) => readFileSync(f, "utf8")).join("\n");
for (const word of [/\bpredict/i, /\btrain(?:ing|ed)?\b/i, /\binference\b/i]) {
  if (word.test(sources)) problems.push(`src/ uses a forbidden word (${word}): the dashboard has no ML UI`);
}
console.log(`${"total JS + CSS".padEnd(40)} ${" ".repeat(10)}  ${String(total).padStart(7)} B gzip (budget ${BUDGET} B)`);
if (total > BUDGET) problems.push(`JS + CSS is ${total} B gzipped, over the ${BUDGET} B budget`);
if (problems.length) {
  for (const p of problems) console.error(`error: ${p}`);
  process.exit(1);
}
console.log("dist/ ok");
