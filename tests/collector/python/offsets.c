/* offsetof() oracle for collector/python/layout.py: compiled against a CPython build's own internal
 * headers (Py_BUILD_CORE), prints "<layout field> <offset>" for every field the table holds. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <structmember.h>
#include <stddef.h>
#include <stdio.h>
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_code.h"

#define P(field, expr) printf("%s %zu\n", field, (size_t)(expr))

int main(void)
{
    P("runtime_interpreters_head", offsetof(_PyRuntimeState, interpreters.head));
    P("interp_next", offsetof(PyInterpreterState, next));
    P("interp_threads_head", offsetof(PyInterpreterState, threads.head));
    P("tstate_next", offsetof(PyThreadState, next));
    P("tstate_native_thread_id", offsetof(PyThreadState, native_thread_id));
    P("tstate_cframe", offsetof(PyThreadState, cframe));
    P("cframe_current_frame", offsetof(_PyCFrame, current_frame));
    P("frame_code", offsetof(_PyInterpreterFrame, f_code));
    P("frame_previous", offsetof(_PyInterpreterFrame, previous));
    P("frame_instr", offsetof(_PyInterpreterFrame, prev_instr));
    P("frame_is_entry", offsetof(_PyInterpreterFrame, is_entry));
    P("frame_owner", offsetof(_PyInterpreterFrame, owner));
    P("code_size", offsetof(PyVarObject, ob_size));
    P("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
    P("code_filename", offsetof(PyCodeObject, co_filename));
    P("code_name", offsetof(PyCodeObject, co_name));
    P("code_qualname", offsetof(PyCodeObject, co_qualname));
    P("code_linetable", offsetof(PyCodeObject, co_linetable));
    P("code_bytecode", offsetof(PyCodeObject, co_code_adaptive));
    P("unicode_length", offsetof(PyASCIIObject, length));
    P("unicode_state", offsetof(PyASCIIObject, state));
    P("unicode_ascii_data", sizeof(PyASCIIObject));
    P("unicode_compact_data", sizeof(PyCompactUnicodeObject));
    P("bytes_size", offsetof(PyVarObject, ob_size));
    P("bytes_data", offsetof(PyBytesObject, ob_sval));
    P("type_members", offsetof(PyTypeObject, tp_members));
    P("member_size", sizeof(PyMemberDef));
    P("member_offset", offsetof(PyMemberDef, offset));
    /* The code stamp is the 8 bytes at co_firstlineno: they must be co_firstlineno, co_nlocalsplus. */
    P("stamp_pair", offsetof(PyCodeObject, co_nlocalsplus) - offsetof(PyCodeObject, co_firstlineno));
    printf("version %d %d\n", PY_MAJOR_VERSION, PY_MINOR_VERSION);
    return 0;
}
