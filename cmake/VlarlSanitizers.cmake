# vlarl_enable_sanitizers(<target>): applies VLARL_SANITIZE (e.g. "address;undefined").
function(vlarl_enable_sanitizers target)
  if(NOT VLARL_SANITIZE)
    return()
  endif()
  string(REPLACE ";" "," _list "${VLARL_SANITIZE}")
  target_compile_options(${target} PRIVATE -fsanitize=${_list} -fno-omit-frame-pointer
                                           -fno-sanitize-recover=all -g)
  target_link_options(${target} PRIVATE -fsanitize=${_list})
endfunction()
