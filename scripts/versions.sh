# Pinned agent versions shared by the image build and the tests (keep in step with
# clauderon/agents/*.py DEFAULT_VERSION).
CLAUDE_CODE_VERSION=2.1.332
CODEX_VERSION=0.171.0
