/* The workspaces under servers_path: <servers_path>/<sid>/ holds a guest's stored descriptor
 * (desc, 0600) and its other files (console password, config drive). No state: any thread.
 * The operations on one guest are serialized by the worker pool's keys (agent/tasks.h). */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/desc.h"
#include "agent/workspace.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/path.h"

char *workspace_dir(const struct config *cfg, const char *sid)
{
	return strjoin(cfg->servers_path, "/", sid);
}

char *workspace_desc(const struct config *cfg, const char *sid)
{
	return strjoin(cfg->servers_path, "/", sid, "/desc");
}

int workspace_load_desc(const struct config *cfg, const char *sid, json_t **ret_json,
			struct guest_desc **ret_desc, char **ret_error)
{
	_cleanup_free_ char *p = workspace_desc(cfg, sid), *txt = NULL;
	if (!p)
		return -ENOMEM;
	int r = read_file(p, GUEST_DESC_MAX, &txt, NULL);
	if (r < 0)
		return r;
	json_error_t jerr;
	_cleanup_(json_decrefp) json_t *j = json_loads(txt, 0, &jerr);
	if (!j)
		return -EBADMSG;
	_cleanup_guest_desc_ struct guest_desc *d = NULL;
	r = guest_desc_parse(j, cfg->local_image_path, &d, ret_error);
	if (r < 0)
		return r;
	/* L7: the paths stored at create must resolve to themselves still. */
	_cleanup_free_ char *why = NULL;
	r = guest_desc_check_resolved(j, d, &why);
	if (r < 0) {
		log_kv(LOG_WARNING, "Stored descriptor refused: a path resolves differently now",
		       "sid", sid, "reason", strempty(why), NULL);
		if (ret_error)
			*ret_error = TAKE_PTR(why);
		return r;
	}
	if (ret_desc)
		*ret_desc = TAKE_PTR(d);
	if (ret_json)
		*ret_json = TAKE_PTR(j);
	return 0;
}

int workspace_store_desc(const struct config *cfg, const char *sid, const char *text)
{
	_cleanup_free_ char *p = workspace_desc(cfg, sid);
	if (!p)
		return -ENOMEM;
	return write_file_atomic(p, text, strlen(text), 0600);
}

int workspace_list(const struct config *cfg, char ***ret_sids)
{
	_cleanup_strv_free_ char **sids = NULL;
	DIR *dir = opendir(cfg->servers_path);
	struct dirent *de;
	/* No workspace directory yet: no guests. */
	int r = dir || errno == ENOENT ? 0 : -errno;
	while (dir && (de = readdir(dir))) {
		if (!id_is_valid(de->d_name, 64))
			continue;
		r = strv_extend(&sids, de->d_name);
		if (r < 0)
			break;
	}
	if (dir)
		closedir(dir);
	*ret_sids = TAKE_PTR(sids);
	return r < 0 ? r : 0;
}
