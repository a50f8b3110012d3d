// `npm run migrate`: installs or updates querygate's idempotency ledger
// (schema `querygate`) for deployments whose login role may not create a
// schema, so query-grpc cannot do it at start. Run it as a role that may
// (the database owner), naming the login role that gets EXECUTE on the
// ledger's functions:
//
//   DATABASE_URL=postgres://owner@host/db npm run migrate -- authenticator
import pg from "pg";
import { migrate } from "../services/query-grpc/src/postgres/ledger.js";

const url = process.env.DATABASE_URL;
const grantee = process.argv[2];
if (!url || !grantee) {
  console.error("usage: DATABASE_URL=postgres://... npm run migrate -- <login role of query-grpc>");
  process.exit(2);
}
const client = new pg.Client({ connectionString: url });
await client.connect();
try {
  await migrate(client, grantee);
  console.log(`querygate ledger installed; EXECUTE granted to ${grantee}`);
} finally {
  await client.end();
}
