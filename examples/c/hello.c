/*
 * hello.c: a C program that checkpoints itself with crac's C ABI.
 *
 * It registers two resources that print in CRaC order, holds 4 MiB of
 * data, optionally first tries a checkpoint with a deleted file open (which
 * fails, naming the file, and the program goes on), then checkpoints ROUNDS
 * times; after each restore it prints its PID, how often it was restored
 * and whether its data is intact.
 *
 *   cargo build --release --workspace
 *   gcc -o hello examples/c/hello.c -I crates/crac-capi/include \
 *       -L target/release -lcrac -Wl,-rpath,"$PWD/target/release"
 *   CRAC_CHECKPOINT_TO=/tmp/hello-image ./hello 2 /tmp/scratch
 *   crac restore /tmp/hello-image      # restore 1, checkpoints again
 *   crac restore /tmp/hello-image      # restore 2, exits
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <crac.h>

#define DATA_LEN (4u << 20)

static unsigned char *data;

/* FNV-1a over the data. */
static uint64_t checksum(void)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < DATA_LEN; i++)
        h = (h ^ data[i]) * 0x100000001b3u;
    return h;
}

struct resource {
    const char *name;
};

static int before(void *arg)
{
    printf("before_checkpoint %s\n", ((struct resource *)arg)->name);
    return 0;
}

static int after(void *arg)
{
    printf("after_restore %s\n", ((struct resource *)arg)->name);
    return 0;
}

/* Registered resources must live as long as the process. */
static struct resource first = {"first"}, second = {"second"};

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    const char *open_file = argc > 2 ? argv[2] : NULL;
    char err[4096];

    setvbuf(stdout, NULL, _IOLBF, 0); /* a line at a time, also into a pipe */
    crac_init();
    crac_register("first", before, after, &first);
    crac_register("second", before, after, &second);

    data = malloc(DATA_LEN);
    if (!data)
        return 1;
    for (size_t i = 0; i < DATA_LEN; i++)
        data[i] = (unsigned char)(i * 7 + i / 4096);
    uint64_t expected = checksum();

    if (open_file) {
        /* A scratch file, deleted while open: the engine carries open
         * files by path, so this one cannot be carried. The checkpoint
         * fails, says why, and the program goes on. */
        FILE *f = fopen(open_file, "w");
        if (!f) {
            perror(open_file);
            return 1;
        }
        unlink(open_file);
        int rc = crac_checkpoint_restore(err, sizeof err);
        printf("checkpoint with a file open: code %d: %s\n", rc, err);
        if (rc != CRAC_ERR_CHECKPOINT)
            return 1;
        fclose(f);
    }

    for (int i = 0; i < rounds; i++) {
        printf("pre-checkpoint PID: %d\n", (int)getpid());
        int rc = crac_checkpoint_restore(err, sizeof err);
        if (rc != CRAC_OK) {
            fprintf(stderr, "checkpoint failed (code %d): %s\n", rc, err);
            return 1;
        }
        struct crac_restore_info info;
        crac_restore_info(&info);
        printf("restored PID: %d, restores: %u, data %s\n", (int)getpid(), info.restore_count,
               checksum() == expected ? "intact" : "CORRUPT");
    }
    return 0;
}
