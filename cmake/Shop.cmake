# Helpers shared by every part of the build: protos, services, tests.

set(SHOP_GEN_DIR ${CMAKE_BINARY_DIR}/gen)

# shop_proto_library(<target> <proto files...>): protoc-c into the build tree.
function(shop_proto_library target)
  set(srcs)
  set(hdrs)
  foreach(proto ${ARGN})
    file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/proto ${proto})
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(c ${SHOP_GEN_DIR}/${stem}.pb-c.c)
    set(h ${SHOP_GEN_DIR}/${stem}.pb-c.h)
    add_custom_command(
      OUTPUT ${c} ${h}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${SHOP_GEN_DIR}
      COMMAND ${PROTOC_C} -I${CMAKE_SOURCE_DIR}/proto --c_out=${SHOP_GEN_DIR} ${rel}
      WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/proto
      DEPENDS ${proto}
      COMMENT "protoc-c ${rel}")
    list(APPEND srcs ${c})
    list(APPEND hdrs ${h})
  endforeach()
  # Every descriptor by full name, for tools that work on any message.
  set(reg ${SHOP_GEN_DIR}/shop_registry.c)
  string(REPLACE ";" "|" hdr_list "${hdrs}")   # a list would split the command
  add_custom_command(
    OUTPUT ${reg}
    COMMAND ${CMAKE_COMMAND} -DOUT=${reg} -DGEN_DIR=${SHOP_GEN_DIR} "-DHEADERS=${hdr_list}"
            -P ${CMAKE_SOURCE_DIR}/cmake/proto_registry.cmake
    DEPENDS ${hdrs} ${CMAKE_SOURCE_DIR}/cmake/proto_registry.cmake
    COMMENT "listing proto descriptors"
    VERBATIM)
  add_library(${target} STATIC ${srcs} ${reg})
  # Generated code is not ours to warn about.
  target_compile_options(${target} PRIVATE -w)
  target_include_directories(${target} PUBLIC ${SHOP_GEN_DIR})
  target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUFC)
endfunction()

# shop_embed_migrations(<out.c> <symbol> <sql files...>): the service's
# numbered migrations compiled into the binary as a migrate_file_t array.
function(shop_embed_migrations out symbol)
  string(REPLACE ";" "|" file_list "${ARGN}")   # a list would split the command
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DSYMBOL=${symbol} "-DFILES=${file_list}"
            -P ${CMAKE_SOURCE_DIR}/cmake/embed_migrations.cmake
    DEPENDS ${ARGN} ${CMAKE_SOURCE_DIR}/cmake/embed_migrations.cmake
    COMMENT "embedding migrations into ${symbol}"
    VERBATIM)
endfunction()

# shop_service(<name>): services/<name>/*.c plus its migrations/ become the
# executable shop-<name>. This is all the build a new service needs.
function(shop_service name)
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.c)
  file(GLOB sqls CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/migrations/*.sql)
  list(SORT sqls)
  set(mig ${CMAKE_CURRENT_BINARY_DIR}/${name}_migrations.c)
  shop_embed_migrations(${mig} ${name}_migrations ${sqls})
  add_executable(shop-${name} ${srcs} ${mig})
  target_include_directories(shop-${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(shop-${name} PRIVATE shop_common)
  install(TARGETS shop-${name} RUNTIME DESTINATION bin)
endfunction()
