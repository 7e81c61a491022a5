#!/usr/bin/env node
// Entry point of the clinicvault command: runs the compiled CLI (npm run build makes dist/).
import { setFlagsFromString } from 'node:v8';

// The main thread only keeps the books (the workers touch the bytes), yet V8 grew its young generation to 16-32 MB
// of semi-spaces that stayed resident; kept at its initial size, the peak of a restore or verify is 14-24 MB lower
// at the same speed (docs/PERFORMANCE.md). Workers have their own limit (pool.ts).
setFlagsFromString('--semi-space-growth-factor=1');

const { main } = await import('../dist/src-main/cli/main.js');
process.exitCode = await main(process.argv);
