#include "CUnderstudySystem.h"

#include <stdlib.h> /* defines __GLIBC__ where the C library is glibc */

#if defined(__linux__) && defined(__GLIBC__)
#include <malloc.h>

int understudy_return_free_memory(void) {
    return malloc_trim(0);
}
#else
int understudy_return_free_memory(void) {
    return 0;
}
#endif

#if defined(__linux__)
#include <sys/prctl.h>

int understudy_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0UL, 0UL, 0UL);
}
#else
int understudy_set_parent_death_signal(int signal) {
    (void)signal;
    return -1;
}
#endif
