// What goes wrong when the embedded PostgreSQL cannot start, as one line that
// says what to do: `npm start` and `npm test` print its message and nothing
// else, never a stack trace.
export class EmbeddedPostgresError extends Error {
  override readonly name = "EmbeddedPostgresError";
}
