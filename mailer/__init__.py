"""supportd's daemon, in rooms: `pipeline` (the flow of one mail) and its `stages`, `transport` (mail
in and out), `ledger` (the database and what is stored), `runtime` (running as a service), `cli`, `demo`;
`config` and `app` (everything a stage needs, built once) at the top."""
