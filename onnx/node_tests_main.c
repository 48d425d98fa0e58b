/*
 * node_tests_main.c — `onnx-node-tests`: ONNX's backend node tests on
 * dlc's three backends (scripts/onnx_node_tests.sh runs it).
 *
 *   onnx-node-tests [--data DIR] [--backends interp,c,jit] [--verbose] [SUBSTRING...]
 *
 * Every test directory of DIR (default Debian's libonnx-testdata) whose
 * name contains one of the substrings (all without any) is run in a child
 * process, so that a crash or a hang (killed after a time limit) is one
 * FAIL and not the end of the run; the child runs the test on each
 * backend (onnx/nodetest.c) and reports one status per backend through a
 * pipe.  The output is a table with one row per op (pass / fail /
 * unsupported per backend), every FAIL with its reason (and with
 * --verbose every unsupported test with the importer's message), then the
 * totals over the float tests (every input and output FLOAT) and over all
 * tests.  The exit status is 1 when any test fails, 0 otherwise:
 * unsupported tests are reported, not failures.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "onnx/nodetest.h"

#define DEFAULT_DATA "/usr/share/libonnx-testdata/data/node"
#define TIME_LIMIT_S 300
#define MAX_OPS 512

typedef struct Report {
  int st[NT_NBACKENDS];
  char why[NT_NBACKENDS][400];
} Report;

typedef struct OpRow {
  char op[64];
  int tests, nfloat;
  int count[NT_NBACKENDS][3];
} OpRow;

typedef struct Totals {
  int tests;
  int count[NT_NBACKENDS][3];
} Totals;

typedef struct Opts {
  const char *data;
  int use[NT_NBACKENDS];
  int verbose;
  char **filters;
  int nfilters;
} Opts;

static int parse_backends(const char *s, int *use) {
  memset(use, 0, NT_NBACKENDS * sizeof *use);
  for (const char *p = s; *p;) {
    size_t n = strcspn(p, ",");
    int found = 0;
    for (int b = 0; b < NT_NBACKENDS; b++)
      if (strlen(nodetest_backend_name(b)) == n && !strncmp(p, nodetest_backend_name(b), n)) use[b] = found = 1;
    if (!found) return fprintf(stderr, "onnx-node-tests: --backends: '%.*s' is not interp, c or jit\n", (int)n, p), -1;
    p += n + (p[n] == ',');
  }
  return 0;
}

static int parse_opts(int argc, char **argv, Opts *o) {
  *o = (Opts){DEFAULT_DATA, {1, 1, 1}, 0, NULL, 0};
  o->filters = calloc((size_t)argc + 1, sizeof *o->filters);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--data") && i + 1 < argc) o->data = argv[++i];
    else if (!strcmp(argv[i], "--backends") && i + 1 < argc) {
      if (parse_backends(argv[++i], o->use)) return -1;
    } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) o->verbose = 1;
    else if (argv[i][0] == '-') return fprintf(stderr, "usage: onnx-node-tests [--data DIR] [--backends interp,c,jit] [--verbose] [SUBSTRING...]\n"), -1;
    else o->filters[o->nfilters++] = argv[i];
  }
  return 0;
}

static int selected(const Opts *o, const char *name) {
  if (strncmp(name, "test_", 5)) return 0;
  for (int k = 0; k < o->nfilters; k++)
    if (strstr(name, o->filters[k])) return 1;
  return !o->nfilters;
}

/* Runs the test in a child; a child that dies fails what it did not report. */
static void run_child(const Opts *o, const char *dir, Report *r) {
  int fd[2];
  memset(r, 0, sizeof *r);
  for (int b = 0; b < NT_NBACKENDS; b++) r->st[b] = NT_FAIL, snprintf(r->why[b], sizeof r->why[b], "not run");
  if (pipe(fd)) return;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    alarm(TIME_LIMIT_S);
    for (int b = 0; b < NT_NBACKENDS; b++) {
      if (!o->use[b]) continue;
      Report one = {{0}};
      one.st[b] = nodetest_run(dir, b, one.why[b], sizeof one.why[b]);
      int msg[1] = {b};
      if (write(fd[1], msg, sizeof msg) != sizeof msg || write(fd[1], &one.st[b], sizeof one.st[b]) != sizeof one.st[b] ||
          write(fd[1], one.why[b], sizeof one.why[b]) != sizeof one.why[b])
        _exit(2);
    }
    _exit(0);
  }
  close(fd[1]);
  int b, status;
  while (pid > 0 && read(fd[0], &b, sizeof b) == sizeof b && b >= 0 && b < NT_NBACKENDS &&
         read(fd[0], &r->st[b], sizeof r->st[b]) == sizeof r->st[b] && read(fd[0], r->why[b], sizeof r->why[b]) == sizeof r->why[b])
    r->why[b][sizeof r->why[b] - 1] = 0;
  close(fd[0]);
  if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status))
    for (int k = 0; k < NT_NBACKENDS; k++)
      if (!strcmp(r->why[k], "not run"))
        snprintf(r->why[k], sizeof r->why[k], "the run died of signal %d (%s)", WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? "over the time limit" : strsignal(WTERMSIG(status)));
}

static OpRow *row_of(OpRow *rows, int *nrows, const char *op) {
  for (int i = 0; i < *nrows; i++)
    if (!strcmp(rows[i].op, op)) return &rows[i];
  if (*nrows == MAX_OPS) return &rows[MAX_OPS - 1];
  snprintf(rows[*nrows].op, sizeof rows[*nrows].op, "%s", op);
  return &rows[(*nrows)++];
}

static int by_op(const void *a, const void *b) { return strcmp(((const OpRow *)a)->op, ((const OpRow *)b)->op); }

static void print_table(const Opts *o, OpRow *rows, int nrows) {
  qsort(rows, (size_t)nrows, sizeof *rows, by_op);
  printf("\n%-34s %5s %5s", "op", "tests", "float");
  for (int b = 0; b < NT_NBACKENDS; b++)
    if (o->use[b]) printf("  %-14s", nodetest_backend_name(b));
  printf("\n%-34s %5s %5s", "", "", "");
  for (int b = 0; b < NT_NBACKENDS; b++)
    if (o->use[b]) printf("  %-14s", "pass/fail/uns");
  printf("\n");
  for (int i = 0; i < nrows; i++) {
    printf("%-34s %5d %5d", rows[i].op, rows[i].tests, rows[i].nfloat);
    for (int b = 0; b < NT_NBACKENDS; b++) {
      char cell[32];
      snprintf(cell, sizeof cell, "%d/%d/%d", rows[i].count[b][NT_PASS], rows[i].count[b][NT_FAIL], rows[i].count[b][NT_UNSUP]);
      if (o->use[b]) printf("  %-14s", cell);
    }
    printf("\n");
  }
}

static void print_totals(const Opts *o, const char *what, const Totals *t) {
  printf("%s: %d tests\n", what, t->tests);
  for (int b = 0; b < NT_NBACKENDS; b++)
    if (o->use[b])
      printf("  %-6s %4d passed, %4d failed, %4d unsupported (%.1f%% passed)\n", nodetest_backend_name(b),
             t->count[b][NT_PASS], t->count[b][NT_FAIL], t->count[b][NT_UNSUP],
             t->tests ? 100.0 * t->count[b][NT_PASS] / t->tests : 0.0);
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

int main(int argc, char **argv) {
  Opts o;
  if (parse_opts(argc, argv, &o)) return 2;
  struct dirent **ents;
  int n = scandir(o.data, &ents, NULL, by_name);
  if (n < 0) return fprintf(stderr, "onnx-node-tests: cannot read %s (install libonnx-testdata)\n", o.data), 2;
  static OpRow rows[MAX_OPS];
  int nrows = 0, failed = 0;
  Totals fl = {0}, all = {0};
  for (int i = 0; i < n; i++) {
    char dir[4096], why[256];
    NodeTestInfo info;
    Report r;
    if (!selected(&o, ents[i]->d_name)) continue;
    snprintf(dir, sizeof dir, "%s/%s", o.data, ents[i]->d_name);
    if (nodetest_describe(dir, &info, why, sizeof why)) {
      fprintf(stderr, "onnx-node-tests: %s: %s\n", ents[i]->d_name, why);
      continue;
    }
    run_child(&o, dir, &r);
    OpRow *row = row_of(rows, &nrows, info.op);
    row->tests++, row->nfloat += info.is_float, all.tests++, fl.tests += info.is_float;
    for (int b = 0; b < NT_NBACKENDS; b++) {
      if (!o.use[b]) continue;
      row->count[b][r.st[b]]++, all.count[b][r.st[b]]++;
      if (info.is_float) fl.count[b][r.st[b]]++;
      if (r.st[b] == NT_FAIL) failed = 1, printf("FAIL %s [%s]: %s\n", ents[i]->d_name, nodetest_backend_name(b), r.why[b]);
      else if (r.st[b] == NT_UNSUP && o.verbose && b == NT_INTERP) printf("unsupported %s (%s%s): %s\n", ents[i]->d_name, info.op, info.is_float ? ", float" : "", r.why[b]);
    }
  }
  for (int i = 0; i < n; i++) free(ents[i]);
  free(ents);
  print_table(&o, rows, nrows);
  printf("\n");
  print_totals(&o, "float tests (every input and output FLOAT)", &fl);
  print_totals(&o, "all tests", &all);
  free(o.filters);
  return failed;
}
