# RevoxOptional.cmake — the optional parts of revox's build (tests, examples, benchmarks, MPI)
# and what happens when a dependency of one is missing.
#
# Each part's option takes AUTO, ON or OFF:
#   AUTO  build the part when its dependencies are found, otherwise skip it with ONE status
#         line naming what was not found and the Debian packages that provide it (the default
#         for a top-level build, so `cmake --install` works with the library's own
#         dependencies alone: a compiler, CMake, OpenMP and nlohmann-json);
#   ON    the part is required: a missing dependency stops the configure step with the same
#         message (scripts/test.sh and scripts/run-default.sh ask for ON);
#   OFF   not built, nothing looked for.

# revox_part_option(<option> <doc>): declares the option (AUTO when revox is the top-level
# project, OFF when it is vendored) and sets <option>_MODE to AUTO, ON or OFF.
function(revox_part_option option doc)
  if(PROJECT_IS_TOP_LEVEL)
    set(default AUTO)
  else()
    set(default OFF)
  endif()
  set(${option} ${default} CACHE STRING "${doc} (AUTO: when the dependencies are found, ON, OFF)")
  set_property(CACHE ${option} PROPERTY STRINGS AUTO ON OFF)
  string(TOUPPER "${${option}}" value)
  if(value STREQUAL "AUTO")
    set(mode AUTO)
  elseif(value)
    set(mode ON)
  else()
    set(mode OFF)
  endif()
  set(${option}_MODE ${mode} PARENT_SCOPE)
endfunction()

# revox_check_part(<option> <result-var> <what> [MISSING <dependency>...]
#                  [DEBIAN <package>...]): <result-var> becomes ON when <option> is not OFF and
# nothing is MISSING. Otherwise, in AUTO mode, one status line says what is skipped, what was
# not found and what to install; in ON mode the same is a fatal error.
function(revox_check_part option result what)
  cmake_parse_arguments(arg "" "" "MISSING;DEBIAN" ${ARGN})
  if(${option}_MODE STREQUAL "OFF")
    set(${result} OFF PARENT_SCOPE)
    return()
  endif()
  if(NOT arg_MISSING)
    set(${result} ON PARENT_SCOPE)
    return()
  endif()
  list(REMOVE_DUPLICATES arg_DEBIAN)
  list(JOIN arg_MISSING ", " missing)
  list(JOIN arg_DEBIAN " " packages)
  if(${option}_MODE STREQUAL "ON")
    message(FATAL_ERROR
      "revox: ${option}=ON builds ${what}, which needs ${missing}: not found. Install what is "
      "missing (Debian: ${packages}) or configure with -D${option}=AUTO (skip what cannot be "
      "built) or -D${option}=OFF.")
  endif()
  message(STATUS
    "revox: skipping ${what}: ${missing} not found (Debian: ${packages}; "
    "-D${option}=OFF silences this)")
  set(${result} OFF PARENT_SCOPE)
endfunction()
