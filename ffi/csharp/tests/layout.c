/* FfxpEvent's size and field offsets as a C compiler lays out the header. Run on Linux, it prints
 * them (size,kind,op,done,total,key,message_len,message) for the C# test to compare with its
 * marshalled struct; compiled for Windows (mingw), the static assertions prove the Windows
 * layout is the one the binding expects (FfxivP2p.Layout.Expected) without running anything.
 * FfxpNodeOptions is held by static assertions only (both compilers), to
 * FfxivP2p.Layout.ExpectedOptions, which the C# test compares with its marshalled struct. */
#include <stddef.h>
#include <stdio.h>
#include "ffxiv_p2p_peer.h"

_Static_assert(sizeof(FfxpEvent) == 328, "size");
_Static_assert(offsetof(FfxpEvent, kind) == 0 && sizeof(enum FfxpEventKind) == 4, "kind");
_Static_assert(offsetof(FfxpEvent, op) == 8, "op");
_Static_assert(offsetof(FfxpEvent, done) == 16, "done");
_Static_assert(offsetof(FfxpEvent, total) == 24, "total");
_Static_assert(offsetof(FfxpEvent, key) == 32, "key");
_Static_assert(offsetof(FfxpEvent, message_len) == 64, "message_len");
_Static_assert(offsetof(FfxpEvent, message) == 68, "message");
_Static_assert(sizeof(FfxpNodeOptions) == 24 && offsetof(FfxpNodeOptions, struct_size) == 0, "options");
_Static_assert(offsetof(FfxpNodeOptions, phonebook_ca) == 8 && offsetof(FfxpNodeOptions, phonebook_ca_len) == 16,
               "options' fields (FfxivP2p.Layout.ExpectedOptions)");
_Static_assert(sizeof(enum FfxpStatus) == 4 && sizeof(size_t) == 8, "status, size_t");

int main(void) {
    printf("%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu\n", sizeof(FfxpEvent), offsetof(FfxpEvent, kind),
           offsetof(FfxpEvent, op), offsetof(FfxpEvent, done), offsetof(FfxpEvent, total),
           offsetof(FfxpEvent, key), offsetof(FfxpEvent, message_len), offsetof(FfxpEvent, message));
    return 0;
}
