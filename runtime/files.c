/*
 * files.c — atomic file writes: one file, or all the outputs of a command
 * as a set (a C file and its header, an object and its header).
 *
 * rt_write_files_atomic works in three phases.  First it checks every
 * destination: none may be a directory, and every directory they go into
 * must exist and be writable, so the usual mistakes (`-o DIR`, a
 * read-only output directory) fail before any byte is written.  Then it
 * writes each file to "path.tmp.XXXXXX" (mkstemp, in the target's own
 * directory so the rename stays within one file system), retrying short
 * writes and EINTR, and fsyncs it.  Only when every temporary is complete
 * does it rename them over their targets, in order, and fsync the
 * directories so the renames are durable.  A failure before the renames
 * unlinks every temporary, so each target keeps its old contents and no
 * stray file is left; a rename cannot be taken back, so the set is only
 * as atomic as POSIX allows once renaming has begun (it fails there only
 * if a destination changes under the writer).
 *
 * Two kinds of destination are not renamed over.  One that exists and is
 * not a regular file (/dev/null, a FIFO, a terminal) is opened and written
 * in place, after every temporary is complete: a rename would replace the
 * device node or pipe with a plain file.  A symbolic link is followed to
 * the file it names, which is replaced atomically while the link stays.
 *
 * A process killed while writing leaves its temporary behind: before
 * writing a target, the writer removes every "target.tmp.XXXXXX" beside it
 * (six characters from mkstemp's alphabet), the leftovers of interrupted
 * earlier writes.  Saves of one target are expected to come from one
 * process at a time.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/rt.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_SUFFIX ".tmp.XXXXXX"

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return 0;
    p += w;
    len -= (size_t)w;
  }
  return 1;
}

/* The directory part of path ("." when there is none) into d, which holds
 * PATH_MAX bytes; NULL when it is longer (no system call would take it).
 * No allocation: after the renames nothing may fail for want of memory. */
static char *dir_of(const char *path, char *d) {
  const char *slash = strrchr(path, '/');
  size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
  if (n >= PATH_MAX) return NULL;
  memcpy(d, slash ? path : ".", n);
  d[n] = 0;
  return d;
}

static const char *base_of(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* Makes the rename durable.  File systems that cannot fsync a directory
 * report EINVAL; the data is already safe there, so that is not an error. */
static RtStatus sync_dir(const char *path, RtError *err) {
  char buf[PATH_MAX], *dir = dir_of(path, buf);
  if (!dir) return rt_fail(err, RT_ERR_IO, "%s: the path is too long", path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  int ok = fd >= 0 && (fsync(fd) == 0 || errno == EINVAL);
  int saved = errno;
  if (fd >= 0) close(fd);
  RtStatus st = RT_OK;
  if (!ok)
    st = rt_fail(err, RT_ERR_IO, "%s: written, but cannot sync directory %s: %s",
                 path, dir, strerror(saved));
  return st;
}

/* New files get 0644; an existing target keeps its permission bits. */
static mode_t target_mode(const char *path) {
  struct stat sb;
  if (stat(path, &sb) == 0) return sb.st_mode & 07777;
  return 0644;
}

/* "name.tmp.XXXXXX" for the target whose base name is base? */
static int is_stale_tmp(const char *entry, const char *base) {
  size_t n = strlen(base), k = sizeof TMP_SUFFIX - 1;
  if (strncmp(entry, base, n) || strlen(entry) != n + k || strncmp(entry + n, ".tmp.", 5)) return 0;
  for (size_t i = n + 5; i < n + k; i++)
    if (!isalnum((unsigned char)entry[i])) return 0;
  return 1;
}

/* Removes the temporaries that interrupted writes of path left behind. */
static void remove_stale(const char *path) {
  char buf[PATH_MAX], *dir = dir_of(path, buf);
  DIR *d = dir ? opendir(dir) : NULL;
  const char *base = base_of(path);
  for (struct dirent *e; d && (e = readdir(d));)
    if (is_stale_tmp(e->d_name, base)) unlinkat(dirfd(d), e->d_name, 0);
  if (d) closedir(d);
}

/* The destination can be written: not a directory, in a writable directory. */
static RtStatus check_dest(const char *path, RtError *err) {
  struct stat sb;
  if (!*path) return rt_fail(err, RT_ERR_IO, "an empty output path");
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
    return rt_fail(err, RT_ERR_IO, "%s: is a directory, not a file to write", path);
  char buf[PATH_MAX], *dir = dir_of(path, buf);
  if (!dir) return rt_fail(err, RT_ERR_IO, "%s: the path is too long", path);
  RtStatus st = RT_OK;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    st = rt_fail(err, RT_ERR_IO, "%s: directory %s does not exist", path, dir);
  else if (access(dir, W_OK | X_OK) != 0)
    st = rt_fail(err, RT_ERR_IO, "%s: cannot write in directory %s: %s", path, dir, strerror(errno));
  return st;
}

static RtStatus fill_tmp(int fd, const RtFileOut *o, RtError *err) {
  if (fchmod(fd, target_mode(o->path)) != 0)
    return rt_fail(err, RT_ERR_IO, "%s: cannot set permissions: %s", o->path, strerror(errno));
  for (int i = 0; i < o->nchunks; i++)
    if (!write_all(fd, o->chunks[i], o->lens[i]))
      return rt_fail(err, RT_ERR_IO, "%s: write failed: %s", o->path, strerror(errno));
  if (fsync(fd) != 0) return rt_fail(err, RT_ERR_IO, "%s: fsync failed: %s", o->path, strerror(errno));
  return RT_OK;
}

/* Writes o into a new temporary beside it; *tmp gets its malloc'd name
 * (NULL when none was created). */
static RtStatus write_tmp(const RtFileOut *o, char **tmp, RtError *err) {
  size_t n = strlen(o->path);
  *tmp = rt_malloc(n + sizeof TMP_SUFFIX);
  if (!*tmp) return rt_fail(err, RT_ERR_NOMEM, "%s: out of memory", o->path);
  memcpy(*tmp, o->path, n);
  memcpy(*tmp + n, TMP_SUFFIX, sizeof TMP_SUFFIX);
  int fd = mkstemp(*tmp);
  if (fd < 0) {
    RtStatus st = rt_fail(err, RT_ERR_IO, "%s: cannot create temporary file: %s", o->path, strerror(errno));
    free(*tmp);
    *tmp = NULL;
    return st;
  }
  RtStatus st = fill_tmp(fd, o, err);
  if (close(fd) != 0 && st == RT_OK) st = rt_fail(err, RT_ERR_IO, "%s: close failed: %s", o->path, strerror(errno));
  return st;
}

/* An existing destination that is not a regular file, written in place. */
static int is_special(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode);
}

static RtStatus rename_all(const RtFileOut *outs, char **tmps, int n, RtError *err) {
  for (int i = 0; i < n; i++) {
    if (!tmps[i]) continue; /* written in place */
    if (rename(tmps[i], outs[i].path) != 0)
      return rt_fail(err, RT_ERR_IO, "%s: cannot rename %s over it: %s", outs[i].path, tmps[i], strerror(errno));
    free(tmps[i]);
    tmps[i] = NULL;
  }
  for (int i = 0; i < n; i++)
    if (!is_special(outs[i].path) && sync_dir(outs[i].path, err)) return RT_ERR_IO;
  return RT_OK;
}

static RtStatus write_in_place(const RtFileOut *o, RtError *err) {
  int fd = open(o->path, O_WRONLY | O_TRUNC);
  if (fd < 0) return rt_fail(err, RT_ERR_IO, "%s: cannot open: %s", o->path, strerror(errno));
  RtStatus st = RT_OK;
  for (int i = 0; i < o->nchunks && st == RT_OK; i++)
    if (!write_all(fd, o->chunks[i], o->lens[i]))
      st = rt_fail(err, RT_ERR_IO, "%s: write failed: %s", o->path, strerror(errno));
  if (close(fd) != 0 && st == RT_OK) st = rt_fail(err, RT_ERR_IO, "%s: close failed: %s", o->path, strerror(errno));
  return st;
}

/* The file a symbolic link names (malloc'd into *owned), so that the file
 * is replaced and the link kept; path itself otherwise. */
static const char *follow_link(const char *path, char **owned) {
  struct stat sb;
  *owned = NULL;
  if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode)) *owned = realpath(path, NULL);
  return *owned ? *owned : path;
}

/* Writes the special destinations in place, the others to temporaries
 * renamed over them once all are complete. */
static RtStatus write_set(const RtFileOut *outs, char **tmps, int n, RtError *err) {
  RtStatus st = RT_OK;
  for (int i = 0; i < n && st == RT_OK; i++)
    if (!is_special(outs[i].path)) {
      remove_stale(outs[i].path);
      st = write_tmp(&outs[i], &tmps[i], err);
    }
  for (int i = 0; i < n && st == RT_OK; i++)
    if (!tmps[i]) st = write_in_place(&outs[i], err);
  if (st == RT_OK) st = rename_all(outs, tmps, n, err);
  return st;
}

static RtStatus check_set(const RtFileOut *outs, int n, RtError *err) {
  for (int i = 0; i < n; i++) {
    if (!is_special(outs[i].path) && check_dest(outs[i].path, err)) return RT_ERR_IO;
    for (int j = 0; j < i; j++)
      if (!strcmp(outs[i].path, outs[j].path))
        return rt_fail(err, RT_ERR_IO, "%s: named twice among the files to write", outs[i].path);
  }
  return RT_OK;
}

RtStatus rt_write_files_atomic(const RtFileOut *outs, int n, RtError *err) {
  RtFileOut *real = rt_calloc((size_t)n + 1, sizeof *real);
  char **owned = rt_calloc((size_t)n + 1, sizeof *owned);
  char **tmps = rt_calloc((size_t)n + 1, sizeof *tmps);
  RtStatus st = real && owned && tmps ? RT_OK
                                      : rt_fail(err, RT_ERR_NOMEM, "%s: out of memory", n ? outs[0].path : "");
  for (int i = 0; i < n && st == RT_OK; i++) {
    real[i] = outs[i];
    real[i].path = follow_link(outs[i].path, &owned[i]);
  }
  if (st == RT_OK) st = check_set(real, n, err);
  if (st == RT_OK) st = write_set(real, tmps, n, err);
  for (int i = 0; tmps && owned && i < n; i++) {
    if (tmps[i]) unlink(tmps[i]);
    free(tmps[i]);
    free(owned[i]);
  }
  free(tmps);
  free(owned);
  free(real);
  return st;
}

RtStatus rt_write_encoded(const RtEncoded *e, int n, RtError *err) {
  RtFileOut *outs = rt_calloc((size_t)n + 1, sizeof *outs);
  if (!outs) return rt_fail(err, RT_ERR_NOMEM, "%s: out of memory", n ? e[0].out.path : "");
  for (int i = 0; i < n; i++) outs[i] = e[i].out;
  RtStatus st = rt_write_files_atomic(outs, n, err);
  free(outs);
  return st;
}

void rt_encoded_free(RtEncoded *e) {
  for (int i = 0; i < 3; i++) free(e->owned[i]);
  memset(e, 0, sizeof *e);
}

RtStatus rt_write_file_atomic(const char *path, const void *const *chunks, const size_t *lens, int nchunks,
                              RtError *err) {
  RtFileOut o = {path, chunks, lens, nchunks};
  return rt_write_files_atomic(&o, 1, err);
}
