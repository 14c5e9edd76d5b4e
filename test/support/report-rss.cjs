'use strict'
// Preloaded (node -r) into a command under test: writes its peak RSS in KiB to $REPORT_RSS_FILE
// at exit, so a test can print the command's memory without timing or polling it.
const { writeFileSync } = require('node:fs')
const file = process.env.REPORT_RSS_FILE
if (file) process.on('exit', () => writeFileSync(file, String(process.resourceUsage().maxRSS)))
