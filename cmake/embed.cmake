# embed.cmake: turn a text file into a C array (cmake -P, or include()).
# Inputs: EMBED_IN (file), EMBED_OUT (the .c to write), EMBED_NAME (symbol).
file(READ ${EMBED_IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${EMBED_OUT}.tmp
     "/* generated from ${EMBED_IN} by embed.cmake: do not edit */\n"
     "extern const char ${EMBED_NAME}[];\n"
     "const char ${EMBED_NAME}[] = {${bytes}0x00};\n")
file(COPY_FILE ${EMBED_OUT}.tmp ${EMBED_OUT} ONLY_IF_DIFFERENT)
