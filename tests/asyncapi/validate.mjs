// Parse AsyncAPI documents with the official parser (@asyncapi/parser).
//
//   node validate.mjs FILE [FILE...]
//
// Prints one line per diagnostic: "FILE: error|warning|info|hint path: message".
// Exits 1 when any document has an error (or cannot be parsed), 2 on bad usage,
// 0 otherwise; warnings do not fail.
import { DiagnosticSeverity, Parser, fromFile } from '@asyncapi/parser';

const NAMES = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.mjs FILE [FILE...]');
  process.exit(2);
}

const parser = new Parser();
let failed = false;
for (const file of files) {
  let result;
  try {
    result = await fromFile(parser, file).parse();
  } catch (exc) {
    console.log(`${file}: error (unreadable): ${exc.message}`);
    failed = true;
    continue;
  }
  const { document, diagnostics } = result;
  let errors = 0;
  for (const d of diagnostics) {
    const severity = NAMES[d.severity] ?? String(d.severity);
    const where = (d.path ?? []).join('.') || '$';
    console.log(`${file}: ${severity} ${where}: ${d.message} [${d.code}]`);
    if (d.severity === DiagnosticSeverity.Error) errors += 1;
  }
  if (errors > 0 || document === undefined) {
    failed = true;
    console.log(`${file}: INVALID (${errors} error(s))`);
  } else {
    console.log(`${file}: valid AsyncAPI ${document.version()}`);
  }
}
process.exit(failed ? 1 : 0);
