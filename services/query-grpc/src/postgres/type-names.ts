// Names of result column types (format_type), looked up once per type OID and
// cached. Types created later (enums, domains) are looked up on first sight.
import type { ControlConnection } from "./control.js";

export class TypeNames {
  private readonly names = new Map<number, string>();

  constructor(private readonly control: ControlConnection) {}

  async namesFor(oids: readonly number[]): Promise<string[]> {
    const missing = [...new Set(oids.filter((oid) => !this.names.has(oid)))];
    if (missing.length > 0) {
      const result = await this.control.query<{ oid: number; name: string }>(
        "select t.oid::int4 as oid, format_type(t.oid, null) as name from unnest($1::oid[]) as t(oid)",
        [missing],
      );
      for (const row of result.rows) this.names.set(row.oid, row.name);
    }
    return oids.map((oid) => this.names.get(oid) ?? String(oid));
  }
}
