/* Prints FfxpEvent's size and field offsets as the C compiler lays out the header, for the C#
 * test to compare with its marshalled struct: size,kind,op,done,total,key,message_len,message. */
#include <stddef.h>
#include <stdio.h>
#include "ffxiv_p2p_peer.h"

int main(void) {
    printf("%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu\n", sizeof(FfxpEvent), offsetof(FfxpEvent, kind),
           offsetof(FfxpEvent, op), offsetof(FfxpEvent, done), offsetof(FfxpEvent, total),
           offsetof(FfxpEvent, key), offsetof(FfxpEvent, message_len), offsetof(FfxpEvent, message));
    return 0;
}
