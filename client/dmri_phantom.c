/* dmri-phantom: placeholder until the generator lands. */
int main(void) { return 0; }
