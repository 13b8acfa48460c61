/* The schema migrations embedded from daemon/sql (see
 * cmake/embed_sql.cmake). Bottom layer: data only. */
#ifndef PM_MIGRATIONS_H
#define PM_MIGRATIONS_H

typedef struct pm_migration {
  int version;      /* from the file name: 001_init.sql is 1 */
  const char *name; /* "001_init" */
  const char *sql;  /* the whole file, run in one transaction */
} pm_migration_t;

/* In version order, ending with {0, NULL, NULL}. */
extern const pm_migration_t pm_migrations[];

#endif
