#pragma once
/*
 * Watching the certificate and key files: a thread of its own with inotify
 * on the directories that hold tls.cert and tls.key, so that a renewal
 * written in place, renamed over the file, or swapped in the Kubernetes
 * way (a Secret volume replaces its `..data` symlink in one rename) is
 * seen whatever the path names.  Once the directories have been quiet for
 * DV_CERTWATCH_SETTLE_MS after a change it sends `sig` to the process,
 * and the main thread reloads the pair with the checks of a reload
 * (src/daemon/reload.h): a half-written pair is refused, and the next
 * change tries again.
 */

#include <stddef.h>

#define DV_CERTWATCH_SETTLE_MS 250

typedef struct dv_certwatch dv_certwatch_t;

/* Watch the directories of `cert` and `key` and start the thread.  NULL
 * (with `err`) when inotify or the thread cannot be had. */
dv_certwatch_t *dv_certwatch_new(const char *cert, const char *key, int sig,
				 char *err, size_t err_len);
/* Stop the thread and close everything (NULL is a no-op). */
void dv_certwatch_free(dv_certwatch_t *w);
