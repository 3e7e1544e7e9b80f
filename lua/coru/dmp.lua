-- coru.dmp: diff-match-patch in C (src/dmp*.c); see docs/dmp.md.
return require("coru").dmp
