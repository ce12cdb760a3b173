# Finds the MuJoCo shipped inside the installed `mujoco` Python wheel (headers in include/, the
# library as libmujoco.so.<version>) and defines the imported target mujoco::mujoco.
# No system MuJoCo is used. Sets MUJOCO_WHEEL_DIR, MUJOCO_WHEEL_VERSION.
if(TARGET mujoco::mujoco)
  return()
endif()

if(NOT Python_EXECUTABLE)
  message(FATAL_ERROR "FindMuJoCoWheel: Python_EXECUTABLE is not set")
endif()

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
          "import mujoco, os; print(os.path.dirname(mujoco.__file__)); print(mujoco.__version__)"
  OUTPUT_VARIABLE _mj_out
  ERROR_VARIABLE _mj_err
  RESULT_VARIABLE _mj_rc
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _mj_rc EQUAL 0)
  message(FATAL_ERROR "vlarl-fast needs the `mujoco` Python wheel installed in ${Python_EXECUTABLE} "
                      "(pip install mujoco==3.3.7):\n${_mj_err}")
endif()
string(REPLACE "\n" ";" _mj_lines "${_mj_out}")
list(GET _mj_lines 0 MUJOCO_WHEEL_DIR)
list(GET _mj_lines 1 MUJOCO_WHEEL_VERSION)

set(_mj_include "${MUJOCO_WHEEL_DIR}/include")
if(NOT EXISTS "${_mj_include}/mujoco/mujoco.h")
  message(FATAL_ERROR "The mujoco wheel at ${MUJOCO_WHEEL_DIR} ships no include/mujoco/mujoco.h")
endif()
file(GLOB _mj_libs "${MUJOCO_WHEEL_DIR}/libmujoco.so.*")
if(NOT _mj_libs)
  message(FATAL_ERROR "The mujoco wheel at ${MUJOCO_WHEEL_DIR} ships no libmujoco.so.*")
endif()
list(GET _mj_libs 0 _mj_lib)

add_library(mujoco::mujoco SHARED IMPORTED)
set_target_properties(mujoco::mujoco PROPERTIES
  IMPORTED_LOCATION "${_mj_lib}"
  IMPORTED_NO_SONAME FALSE
  INTERFACE_INCLUDE_DIRECTORIES "${_mj_include}")
message(STATUS "MuJoCo ${MUJOCO_WHEEL_VERSION} from the Python wheel: ${_mj_lib}")
