/*
 * Stand-in bcryptprimitives.dll for the Wine prefix that scripts/windows builds in.
 *
 * THIS BELONGS TO THE BUILD/TEST MACHINE ONLY, NEVER TO THE PRODUCT: scripts/windows compiles it
 * with MinGW into build/windows/ and copies it into the Wine prefix's C:\windows\system32. It is
 * not shipped, not bundled into the .exe files, and not needed on real Windows (8 and later have
 * the real bcryptprimitives.dll).
 *
 * Why: the Rust core of the cryptography package (_rust.pyd, pulled in by securesystemslib[crypto]
 * and tuf) imports bcryptprimitives.dll!ProcessPrng, the random source Rust's standard library
 * uses on Windows. Wine 8.0 has no bcryptprimitives.dll, so the import fails ("DLL load failed
 * while importing _rust") in the build interpreter and in the built programs run under Wine.
 *
 * ProcessPrng fills the buffer from the system random source and, as documented, always returns
 * TRUE. Here the source is RtlGenRandom (advapi32!SystemFunction036), which takes a ULONG length,
 * so larger buffers are filled in chunks.
 */
#include <windows.h>
#include <limits.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > (SIZE_T)ULONG_MAX ? ULONG_MAX : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance; (void)reason; (void)reserved;
    return TRUE;
}
