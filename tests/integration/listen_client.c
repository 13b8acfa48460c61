/*
 * A LISTEN client for the tests: connects with libpq (PG* environment or
 * argv[1] as conninfo), LISTENs on argv[2], prints "ready" once listening,
 * then every notification's payload on its own line, until argv[3]
 * seconds pass. Exits 0, or 1 when it cannot connect.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <time.h>
#include <libpq-fe.h>

int main(int argc, char **argv) {
  PGconn *c;
  PGresult *r;
  char sql[256];
  time_t end;
  if (argc != 4) {
    fprintf(stderr, "usage: listen_client CONNINFO CHANNEL SECONDS\n");
    return 2;
  }
  c = PQconnectdb(argv[1]);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "listen_client: %s", PQerrorMessage(c));
    PQfinish(c);
    return 1;
  }
  snprintf(sql, sizeof sql, "LISTEN %s", argv[2]);
  r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    fprintf(stderr, "listen_client: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return 1;
  }
  PQclear(r);
  printf("ready\n");
  fflush(stdout);
  end = time(NULL) + atoi(argv[3]);
  while (time(NULL) < end) {
    PGnotify *n;
    fd_set fds;
    struct timeval tv = {0, 200000};
    int fd = PQsocket(c);
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    if (select(fd + 1, &fds, NULL, NULL, &tv) < 0)
      break;
    if (!PQconsumeInput(c)) {
      fprintf(stderr, "listen_client: %s", PQerrorMessage(c));
      break;
    }
    while ((n = PQnotifies(c)) != NULL) {
      printf("%s\n", n->extra);
      fflush(stdout);
      PQfreemem(n);
    }
  }
  PQfinish(c);
  return 0;
}
