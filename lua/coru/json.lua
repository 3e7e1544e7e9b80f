-- coru.json: the runtime's JSON codec in C (src/json_*.c); see docs/json.md.
return require("coru").json
