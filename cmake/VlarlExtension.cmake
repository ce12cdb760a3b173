# vlarl_add_python_module(<name> SOURCES ... LIBS ...): the one place that declares a Python
# extension module (warnings, hidden visibility, rpath to the mujoco wheel, output folder).
function(vlarl_add_python_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  pybind11_add_module(${name} MODULE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS})
  target_compile_options(${name} PRIVATE -Wall -Wextra)
  # libmujoco lives in site-packages/mujoco next to site-packages/vlarl_fast; the absolute
  # build-time path serves editable installs. Importing `mujoco` first (vlarl_fast does) also
  # makes the already-loaded library satisfy the dependency.
  set_target_properties(${name} PROPERTIES
    BUILD_RPATH "\$ORIGIN/../mujoco;${MUJOCO_WHEEL_DIR}"
    INSTALL_RPATH "\$ORIGIN/../mujoco;${MUJOCO_WHEEL_DIR}"
    CXX_VISIBILITY_PRESET hidden)
  if(VLARL_PYTHON_OUTPUT_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${VLARL_PYTHON_OUTPUT_DIR}")
  endif()
endfunction()
