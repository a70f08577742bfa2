/* holdfile.exe PATH READY RELEASE: a Windows process that holds PATH open the way opus i or a
 * virus scanner does: read access, sharing read only (no FILE_SHARE_WRITE, no FILE_SHARE_DELETE),
 * so no other process may replace, rename or delete the file while it is held.
 *
 * It writes its Windows process id into the file READY once the handle is open (the host's pid
 * for the updater's --wait-pid), then holds it until the file RELEASE
 * exists (polled every 50 ms, at most 10 minutes), closes the handle and exits 0.
 * Exit 2: PATH could not be opened (GetLastError() is printed).
 *
 * Built by the Windows test tier with Debian's MinGW (x86_64-w64-mingw32-gcc); a test program,
 * never part of the product. */
#include <windows.h>
#include <stdio.h>

static int exists(const wchar_t *path) {
    return GetFileAttributesW(path) != INVALID_FILE_ATTRIBUTES;
}

int wmain(int argc, wchar_t **argv) {
    if (argc != 4) {
        fwprintf(stderr, L"usage: holdfile PATH READY RELEASE\n");
        return 1;
    }
    HANDLE held = CreateFileW(argv[1], GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING,
                              FILE_ATTRIBUTE_NORMAL, NULL);
    if (held == INVALID_HANDLE_VALUE) {
        fwprintf(stderr, L"cannot open %ls: error %lu\n", argv[1], GetLastError());
        return 2;
    }
    /* written to a temp name and renamed, so the reader never sees half of the pid */
    wchar_t temp[32768];
    _snwprintf(temp, 32768, L"%ls.tmp", argv[2]);
    FILE *ready = _wfopen(temp, L"w");
    if (ready == NULL) {
        return 3;
    }
    fprintf(ready, "%lu\n", GetCurrentProcessId());
    fclose(ready);
    MoveFileExW(temp, argv[2], MOVEFILE_REPLACE_EXISTING);
    for (int i = 0; i < 12000 && !exists(argv[3]); i++) {
        Sleep(50);
    }
    CloseHandle(held);
    return 0;
}
