/* The C ABI as a plugin uses it: bad input first (status + message, no crash), then two nodes
 * in one process register with a real pi-server, look each other up, fetch a file with
 * progress, cancel, shut down twice, and calls after shutdown. Each node lists two phone books,
 * one of them down.
 * Usage: test PHONEBOOK_URL WORKDIR SHARED_DIR FILE_HASH   (or: test --bad-input-only) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ffxiv_p2p_peer.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)
#define S(str) (const uint8_t *)(str), strlen(str)

static void show_error(const char *what) {
    char buf[512];
    size_t len = 0;
    FfxpStatus s = ffxp_last_error((uint8_t *)buf, sizeof buf, &len);
    CHECK(s == FFXP_STATUS_OK);
    printf("%s: %.*s\n", what, (int)len, buf);
    CHECK(len > 0);
}

static void bad_input(void) {
    uint64_t h = 0, op = 0;
    /* Required fields missing. */
    CHECK(ffxp_node_create(NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0, &h) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("empty config");
    /* Null with a length. */
    CHECK(ffxp_node_create(NULL, 5, S("/tmp"), NULL, 0, NULL, 0, NULL, 0, &h) == FFXP_STATUS_NULL_POINTER);
    show_error("null pointer");
    /* Invalid UTF-8. */
    const uint8_t bad[] = {0x66, 0xff, 0xfe};
    CHECK(ffxp_node_create(bad, sizeof bad, S("/tmp"), NULL, 0, NULL, 0, NULL, 0, &h) == FFXP_STATUS_INVALID_UTF8);
    show_error("invalid utf-8");
    /* A bad listen address, a phone book without a name. */
    CHECK(ffxp_node_create(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), NULL, 0, NULL, 0, S("not an address"), &h) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("bad listen");
    CHECK(ffxp_node_create(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), S("http://127.0.0.1:1"), NULL, 0, S("127.0.0.1:0"), &h) == FFXP_STATUS_START_FAILED);
    show_error("phone book without a name");
    /* Phone-book lists: several URLs separated by whitespace, at most FFXP_MAX_PHONEBOOKS,
     * each http:// or https://; a bad entry is named in the message. */
    char many[1024] = "";
    for (int i = 1; i <= FFXP_MAX_PHONEBOOKS + 1; i++) {
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d\n", i);
        strcat(many, url);
    }
    CHECK(ffxp_node_create(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), S(many), S("Cee Bad@Lich"), S("127.0.0.1:0"), &h) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("too many phone books");
    CHECK(ffxp_node_create(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), S("http://127.0.0.1:1 ftp://127.0.0.1:2"), S("Cee Bad@Lich"), S("127.0.0.1:0"), &h) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("an ftp:// phone book");
    CHECK(ffxp_node_create(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), S("http://127.0.0.1:1\nhttp://127.0.0.1:1"), S("Cee Bad@Lich"), S("127.0.0.1:0"), &h) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("a phone book twice");
    /* Options: a CA file that is missing, or not PEM; a bad struct_size; a newer caller's
     * option this library does not know. */
    FfxpNodeOptions o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.phonebook_ca = (const uint8_t *)"/nonexistent/ca.pem";
    o.phonebook_ca_len = strlen("/nonexistent/ca.pem");
    CHECK(ffxp_node_create_ex(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), S("https://127.0.0.1:1"), S("Cee Bad@Lich"), S("127.0.0.1:0"), &o, &h) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("a missing CA file");
    FILE *f = fopen("/tmp/ffxp-bad-ca.pem", "w");
    if (f) {
        fputs("not a certificate\n", f);
        fclose(f);
        o.phonebook_ca = (const uint8_t *)"/tmp/ffxp-bad-ca.pem";
        o.phonebook_ca_len = strlen("/tmp/ffxp-bad-ca.pem");
        CHECK(ffxp_node_create_ex(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), S("https://127.0.0.1:1"), S("Cee Bad@Lich"), S("127.0.0.1:0"), &o, &h) == FFXP_STATUS_INVALID_ARGUMENT);
        show_error("a CA file that is not PEM");
        remove("/tmp/ffxp-bad-ca.pem");
    } else {
        printf("(no CA file written to /tmp: that check skipped)\n");
    }
    o.phonebook_ca = NULL;
    o.phonebook_ca_len = 0;
    o.struct_size = 4;
    CHECK(ffxp_node_create_ex(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), NULL, 0, NULL, 0, S("127.0.0.1:0"), &o, &h) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("struct_size 4");
    struct { FfxpNodeOptions o; uint64_t newer_option; } bigger;
    memset(&bigger, 0, sizeof bigger);
    bigger.o.struct_size = sizeof bigger;
    bigger.newer_option = 1;
    CHECK(ffxp_node_create_ex(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), NULL, 0, NULL, 0, S("127.0.0.1:0"), &bigger.o, &h) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("an option this library does not know");
    CHECK(ffxp_node_create_ex(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), NULL, 0, NULL, 0, S("127.0.0.1:0"), NULL, NULL) == FFXP_STATUS_NULL_POINTER);
    /* Null output pointer. */
    CHECK(ffxp_node_create(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), NULL, 0, NULL, 0, NULL, 0, NULL) == FFXP_STATUS_NULL_POINTER);
    /* Handles that were never created. */
    FfxpEvent e;
    CHECK(ffxp_node_poll_event(0, &e) == FFXP_STATUS_INVALID_HANDLE);
    CHECK(ffxp_node_poll_event(0xdeadbeef00000007ull, &e) == FFXP_STATUS_INVALID_HANDLE);
    CHECK(ffxp_node_lookup(12345, S("A B@C"), &op) == FFXP_STATUS_INVALID_HANDLE);
    CHECK(ffxp_node_cancel(0, 1) == FFXP_STATUS_INVALID_HANDLE);
    CHECK(ffxp_node_shutdown(0) == FFXP_STATUS_INVALID_HANDLE);
    show_error("bad handle");
    /* A message buffer too small reports the length needed. */
    size_t need = 0;
    CHECK(ffxp_last_error(NULL, 0, &need) == FFXP_STATUS_BUFFER_TOO_SMALL && need > 0);
    CHECK(ffxp_last_error(NULL, 0, NULL) == FFXP_STATUS_NULL_POINTER);
    /* A node without a phone book: start, bad calls on a live handle, shut down twice. */
    CHECK(ffxp_node_create(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), NULL, 0, NULL, 0, S("127.0.0.1:0"), &h) == FFXP_STATUS_OK);
    CHECK(ffxp_node_poll_event(h, NULL) == FFXP_STATUS_NULL_POINTER);
    CHECK(ffxp_node_fetch(h, S("zz"), S("A B@C"), &op) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("bad hash");
    CHECK(ffxp_node_cancel(h, 999) == FFXP_STATUS_UNKNOWN_OPERATION);
    CHECK(ffxp_node_set_visibility(h, 7) == FFXP_STATUS_INVALID_ARGUMENT);
    /* Friends: bad lists are refused, with the reason. */
    uint8_t keys[2 * 32];
    CHECK(ffxp_node_key(h, NULL) == FFXP_STATUS_NULL_POINTER);
    CHECK(ffxp_node_key(h, (uint8_t (*)[32])keys) == FFXP_STATUS_OK);
    memcpy(keys + 32, keys, 32);
    CHECK(ffxp_node_set_friends(h, NULL, 1) == FFXP_STATUS_NULL_POINTER);
    CHECK(ffxp_node_set_friends(h, keys, 65) == FFXP_STATUS_INVALID_ARGUMENT);
    CHECK(ffxp_node_set_friends(h, keys, 2) == FFXP_STATUS_INVALID_ARGUMENT);
    show_error("a key twice");
    CHECK(ffxp_node_set_friends(h, keys, 1) == FFXP_STATUS_OK);
    CHECK(ffxp_node_set_friends(h, NULL, 0) == FFXP_STATUS_OK);
    CHECK(ffxp_node_shutdown(h) == FFXP_STATUS_OK);
    CHECK(ffxp_node_shutdown(h) == FFXP_STATUS_INVALID_HANDLE);
    CHECK(ffxp_node_poll_event(h, &e) == FFXP_STATUS_INVALID_HANDLE);
    /* The same handle value never comes back for a new node. A larger struct from a newer
     * caller with its extra fields zero is fine. */
    uint64_t h2 = 0;
    bigger.newer_option = 0;
    CHECK(ffxp_node_create_ex(S("/tmp/ffxp-bad/id"), S("/tmp/ffxp-bad"), NULL, 0, NULL, 0, S("127.0.0.1:0"), &bigger.o, &h2) == FFXP_STATUS_OK);
    CHECK(h2 != h);
    CHECK(ffxp_node_poll_event(h, &e) == FFXP_STATUS_INVALID_HANDLE);
    CHECK(ffxp_node_shutdown(h2) == FFXP_STATUS_OK);
}

/* Polls `h` (as a game would, once per "frame") until an event of `kind` for `op` arrives. */
static int wait_event(uint64_t h, FfxpEventKind kind, uint64_t op, int *progress) {
    for (int frame = 0; frame < 2000; frame++) {
        FfxpEvent e;
        FfxpStatus s;
        while ((s = ffxp_node_poll_event(h, &e)) == FFXP_STATUS_OK) {
            if (e.kind == FFXP_EVENT_KIND_PROGRESS && progress) (*progress)++;
            if (e.kind == FFXP_EVENT_KIND_FAILED || e.kind == FFXP_EVENT_KIND_REGISTRATION_RETRYING)
                printf("event %d op %llu: %.*s\n", (int)e.kind, (unsigned long long)e.op, (int)e.message_len, e.message);
            if (e.kind == kind && e.op == op) return 1;
        }
        CHECK(s == FFXP_STATUS_NO_EVENT);
        usleep(10000);
    }
    return 0;
}

static void two_nodes(const char *url, const char *work, const char *shared, const char *hash) {
    char id_a[512], data_a[512], id_b[512], data_b[512];
    snprintf(id_a, sizeof id_a, "%s/a/id.key", work);
    snprintf(data_a, sizeof data_a, "%s/a", work);
    snprintf(id_b, sizeof id_b, "%s/b/id.key", work);
    snprintf(data_b, sizeof data_b, "%s/b", work);
    /* Two phone books each, one of them down (nothing listens on port 1): the nodes register
     * with the other and find each other through it. b, which looks up, lists the dead one
     * first. b is created through ffxp_node_create_ex with options and no CA file. */
    char books_a[600], books_b[600];
    snprintf(books_a, sizeof books_a, "%s http://127.0.0.1:1", url);
    snprintf(books_b, sizeof books_b, "http://127.0.0.1:1\n%s", url);
    FfxpNodeOptions o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    uint64_t a = 0, b = 0, op = 0;
    CHECK(ffxp_node_create(S(id_a), S(data_a), S(books_a), S("Cee Seeder@Lich"), S("127.0.0.1:0"), &a) == FFXP_STATUS_OK);
    CHECK(ffxp_node_share(a, S(shared)) == FFXP_STATUS_OK);
    CHECK(ffxp_node_create_ex(S(id_b), S(data_b), S(books_b), S("Cee Fetcher@Lich"), S("127.0.0.1:0"), &o, &b) == FFXP_STATUS_OK);
    CHECK(wait_event(a, FFXP_EVENT_KIND_REGISTERED, 0, NULL));
    CHECK(wait_event(b, FFXP_EVENT_KIND_REGISTERED, 0, NULL));
    /* A new node is friends-only with no friends: b cannot find a. */
    CHECK(ffxp_node_lookup(b, S("Cee Seeder@Lich"), &op) == FFXP_STATUS_OK);
    CHECK(wait_event(b, FFXP_EVENT_KIND_FAILED, op, NULL));
    /* a lists b's key: now b finds a. */
    uint8_t kb[32];
    CHECK(ffxp_node_key(b, &kb) == FFXP_STATUS_OK);
    CHECK(ffxp_node_set_friends(a, kb, 1) == FFXP_STATUS_OK);
    CHECK(wait_event(a, FFXP_EVENT_KIND_REGISTERED, 0, NULL));
    CHECK(ffxp_node_lookup(b, S("Cee Seeder@Lich"), &op) == FFXP_STATUS_OK);
    CHECK(wait_event(b, FFXP_EVENT_KIND_FOUND, op, NULL));
    int progress = 0;
    CHECK(ffxp_node_fetch(b, S(hash), S("Cee Seeder@Lich"), &op) == FFXP_STATUS_OK);
    CHECK(wait_event(b, FFXP_EVENT_KIND_DONE, op, &progress));
    printf("fetched with %d progress events\n", progress);
    CHECK(progress > 0);
    /* Cancel: a lookup of nobody, cancelled at once (or already failed: both are fine). */
    CHECK(ffxp_node_lookup(b, S("Nobody There@Lich"), &op) == FFXP_STATUS_OK);
    FfxpStatus c = ffxp_node_cancel(b, op);
    CHECK(c == FFXP_STATUS_OK || c == FFXP_STATUS_UNKNOWN_OPERATION);
    CHECK(wait_event(b, FFXP_EVENT_KIND_FAILED, op, NULL));
    CHECK(ffxp_node_set_visibility(a, 1) == FFXP_STATUS_OK);
    CHECK(ffxp_node_shutdown(a) == FFXP_STATUS_OK);
    CHECK(ffxp_node_shutdown(b) == FFXP_STATUS_OK);
    CHECK(ffxp_node_shutdown(a) == FFXP_STATUS_INVALID_HANDLE);
    CHECK(ffxp_node_lookup(b, S("Cee Seeder@Lich"), &op) == FFXP_STATUS_INVALID_HANDLE);
}

int main(int argc, char **argv) {
    bad_input();
    if (argc == 5) two_nodes(argv[1], argv[2], argv[3], argv[4]);
    else if (!(argc == 2 && strcmp(argv[1], "--bad-input-only") == 0)) {
        fprintf(stderr, "usage: test PHONEBOOK_URL WORKDIR SHARED_DIR FILE_HASH | --bad-input-only\n");
        return 2;
    }
    printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
